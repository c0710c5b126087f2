import type { Kafka, Producer } from 'kafkajs';
import type { Lane } from './lane.js';
import { withRetry, type RetryOptions } from './retry.js';

/** What exactly-once needs of the producers: their transactionalId prefix and transaction timeout. */
export interface ExactlyOnceSettings {
  readonly transactionalIdPrefix: string;
  readonly transactionTimeoutMs: number;
}

/**
 * The transactional producer of each lane (exactly-once: one transactionalId per input partition,
 * `<prefix>.<topic>.<partition>`), which the lane's sink reaches through `LaneControl.producer`.
 * Without exactly-once settings it holds none, and every call is a no-op.
 */
export class LaneProducers {
  private readonly producers = new Map<Lane, Producer>();

  constructor(
    private readonly kafka: Kafka,
    private readonly settings: ExactlyOnceSettings | undefined,
    private readonly retry: RetryOptions,
  ) {}

  get(lane: Lane): Producer | undefined {
    return this.producers.get(lane);
  }

  /** Opens the lane's producer, which fences the partition's previous owner. */
  async open(lane: Lane, retry: RetryOptions = this.retry): Promise<void> {
    const { settings } = this;
    if (settings) this.producers.set(lane, await withRetry(() => this.connect(lane, settings), retry));
  }

  /**
   * Closes the lane's producer and opens a new one, which fences the old one and ends its open transaction. False,
   * with no producer left, when `current` stops holding meanwhile.
   */
  async replace(lane: Lane, current: () => boolean): Promise<boolean> {
    const { settings } = this;
    if (!settings) return true;
    await this.close(lane);
    const producer = await withRetry(() => this.connect(lane, settings), this.retry);
    if (!current()) {
      await producer.disconnect().catch(() => {});
      return false;
    }
    this.producers.set(lane, producer);
    return true;
  }

  /** Disconnects the lane's producer, once; resolves when it is closed. */
  async close(lane: Lane): Promise<void> {
    const producer = this.producers.get(lane);
    this.producers.delete(lane);
    await producer?.disconnect().catch(() => {});
  }

  /** Registering the transactionalId bumps its epoch: the previous owner's producer is fenced and its open transaction aborted, so the committed offset read next is final. */
  private async connect(lane: Lane, settings: ExactlyOnceSettings): Promise<Producer> {
    const producer: Producer = this.kafka.producer({
      transactionalId: `${settings.transactionalIdPrefix}.${lane.topic}.${lane.partition}`,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: settings.transactionTimeoutMs,
    });
    try {
      await producer.connect();
      const fence = await producer.transaction();
      await fence.abort();
    } catch (error) {
      await producer.disconnect().catch(() => {});
      throw error;
    }
    return producer;
  }
}
