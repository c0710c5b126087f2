import type { Message, Producer, RecordMetadata, TopicMessages } from 'kafkajs';
import { asyncScheduler, Observable, type OperatorFunction, type SchedulerLike, type Subscriber, type Subscription } from 'rxjs';
import { z } from 'zod';
import { CheckpointError, LaneLostError } from './errors.js';
import type { Lane, OffsetSpan } from './lane.js';
import { isTransient, untilHealed, withRetry } from './retry.js';
import { validateOptions } from './validateOptions.js';

/** Messages to write, and the lane offsets they were made from. What `checkpoint` and `toKafka` take. */
export interface Outputs {
  readonly messages: readonly TopicMessages[];
  /** The input offsets of the lane that these messages account for. */
  readonly covers: readonly OffsetSpan[];
}

/** What a committed checkpoint reports. */
export interface CheckpointReport {
  readonly topic: string;
  readonly partition: number;
  /** The committed offset: the next one to read. */
  readonly offset: number;
  /** How many messages the checkpoint wrote. */
  readonly messages: number;
  /** How many `Outputs` it committed. */
  readonly outputs: number;
  readonly durationMs: number;
}

/** Options of {@link checkpoint}. */
export interface CheckpointOptions {
  /** The lane whose outputs and offsets are committed together. */
  readonly lane: Lane;
  /**
   * `exactly-once` (default): each checkpoint is one Kafka transaction with the
   * outputs and the offsets (needs `fromKafka`'s `exactlyOnce`). `at-least-once`:
   * the outputs are written and acknowledged first, then the offsets committed.
   */
  readonly mode?: 'exactly-once' | 'at-least-once';
  /** at-least-once: the (idempotent) producer to write with. */
  readonly producer?: Producer;
  /** Commit at least this often, in ms. Default 1,000. */
  readonly intervalMs?: number;
  /** Also commit once this many `Outputs` wait (Flink's "every N windows"). Default 1,000. */
  readonly maxPendingOutputs?: number;
  /** Split the writes of one checkpoint into requests of about this many bytes. Default 512 KiB. */
  readonly maxRequestBytes?: number;
  /** How long a commit keeps retrying while the broker is away (outage, restart), in ms. Default 300,000. */
  readonly outageToleranceMs?: number;
  /**
   * exactly-once: called once a checkpoint's messages are written, before its transaction commits, with the offset
   * each message that names its partition got. A returned reason vetoes the checkpoint: the transaction is aborted
   * (no reader ever sees its messages) and the lane ends with that reason, so its records are read again from the
   * committed offset, by this member when the group still gives it the partition. What the veto protects is the
   * caller's to say; the parameter-server workers use it to keep a hard staleness bound.
   */
  readonly beforeCommit?: (written: readonly WrittenMessage[]) => string | undefined;
  readonly scheduler?: SchedulerLike;
}

/** A message written inside a checkpoint's transaction, not yet committed, and the offset it got. */
export interface WrittenMessage {
  readonly topic: string;
  readonly partition: number;
  /** The offset the broker gave it, or -1 when its answer did not say. */
  readonly offset: number;
  readonly message: Message;
}

const optionsSchema = z
  .object({
    lane: z.custom<Lane>((value) => typeof value === 'object' && value !== null && 'markProcessed' in value, 'must be a Lane from fromKafka'),
    mode: z.enum(['exactly-once', 'at-least-once']).default('exactly-once'),
    producer: z.custom<Producer>((value) => typeof value === 'object' && value !== null && 'sendBatch' in value, 'must be a kafkajs Producer').optional(),
    intervalMs: z.number().int().positive().default(1_000),
    maxPendingOutputs: z.number().int().positive().default(1_000),
    maxRequestBytes: z.number().int().positive().default(512 * 1024),
    outageToleranceMs: z.number().int().positive().default(300_000),
    beforeCommit: z.custom<(written: readonly WrittenMessage[]) => string | undefined>((value) => typeof value === 'function', 'must be a function').optional(),
    scheduler: z.custom<SchedulerLike>().default(asyncScheduler),
  })
  .refine((o) => o.mode === 'exactly-once' || o.producer !== undefined, { message: 'at-least-once needs a producer', path: ['producer'] })
  .refine((o) => o.mode === 'exactly-once' || o.beforeCommit === undefined, { message: 'only an exactly-once checkpoint can veto its writes', path: ['beforeCommit'] });


// Our transactional producer's epoch is old: the partition's next owner registered our transactionalId (we are a
// zombie for this lane), or the coordinator aborted our transaction because it outlived the transaction timeout (a
// broker outage longer than that). Which one, only the group can say: the lane's recover() asks it.
const fencedErrorTypes = new Set(['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED']);
function isFenced(error: unknown): boolean {
  return typeof error === 'object' && error !== null && fencedErrorTypes.has(String((error as { type?: unknown }).type));
}

function highestCovered(outputs: Outputs): number {
  let highest = -1;
  for (const span of outputs.covers) if (span.last > highest) highest = span.last;
  return highest;
}

function lowestCovered(outputs: Outputs): number {
  let lowest = Infinity;
  for (const span of outputs.covers) if (span.first < lowest) lowest = span.first;
  return lowest;
}

/**
 * Which pending outputs may commit now, and the offset to commit with them. The
 * committed outputs must cover exactly the records below that offset: an output
 * that reaches it or beyond (it also covers records not yet processed, e.g. a
 * batch of dead letters around a gradient batch still in flight) stays pending
 * and holds the offset below its first record, for losing the lane would lose it;
 * and an output held back that way may hold others back in turn, for the next
 * owner of the partition reads everything from the committed offset again and an
 * output committed above it would be trained twice.
 */
export function committable(pending: readonly Outputs[], processedFrontier: number): { readonly ready: Outputs[]; readonly frontier: number } {
  let frontier = processedFrontier;
  for (let lowered = true; lowered; ) {
    lowered = false;
    for (const output of pending) {
      const lowest = lowestCovered(output);
      if (highestCovered(output) >= frontier && lowest < frontier) {
        frontier = lowest;
        lowered = true;
      }
    }
  }
  return { ready: pending.filter((output) => highestCovered(output) < frontier), frontier };
}

/** Groups messages by topic and cuts them into requests of about `maxBytes`. */
export function batchRequests(outputs: readonly Outputs[], maxBytes: number): TopicMessages[][] {
  const requests: TopicMessages[][] = [];
  let current = new Map<string, Message[]>();
  let bytes = 0;
  const flush = () => {
    if (current.size === 0) return;
    requests.push([...current].map(([topic, messages]) => ({ topic, messages })));
    current = new Map();
    bytes = 0;
  };
  for (const output of outputs) {
    for (const { topic, messages } of output.messages) {
      for (const message of messages) {
        const size = 64 + (message.value?.length ?? 0) + (message.key?.length ?? 0);
        if (bytes + size > maxBytes) flush();
        let list = current.get(topic);
        if (!list) current.set(topic, (list = []));
        list.push(message);
        bytes += size;
      }
    }
  }
  flush();
  return requests;
}

/**
 * The offset each message of a request that names its partition got: kafkajs writes a request's messages for one
 * partition as one batch, in order, from the `baseOffset` the broker answers with.
 */
export function writtenMessages(request: readonly TopicMessages[], answers: readonly RecordMetadata[]): WrittenMessage[] {
  const base = new Map(answers.map((answer) => [`${answer.topicName}:${answer.partition}`, answer.errorCode === 0 && answer.baseOffset !== undefined ? Number(answer.baseOffset) : -1]));
  const next = new Map<string, number>();
  const written: WrittenMessage[] = [];
  for (const { topic, messages } of request) {
    for (const message of messages) {
      if (message.partition === undefined) continue;
      const key = `${topic}:${message.partition}`;
      const index = next.get(key) ?? 0;
      next.set(key, index + 1);
      const first = base.get(key) ?? -1;
      written.push({ topic, partition: message.partition, offset: Number.isSafeInteger(first) && first >= 0 ? first + index : -1, message });
    }
  }
  return written;
}

/**
 * Flink's exactly-once sink for one lane. Gathers the lane's outputs and, every
 * `intervalMs` or `maxPendingOutputs`, commits those made only from offsets below
 * the lane's processed frontier, with that frontier as the group's offset:
 * in `exactly-once` mode in one Kafka transaction on the lane's own
 * transactional producer; in `at-least-once` mode by writing and awaiting the
 * outputs, then committing the offset. Committed records are released from
 * the lane, which is what lets its partition read on.
 *
 * A revoked lane commits nothing more: what it still holds is dropped, for the
 * partition's next owner reads it again from the last committed offset.
 * Emits one {@link CheckpointReport} per commit, and completes after the last
 * commit once its source completes.
 */
export function checkpoint(options: CheckpointOptions): OperatorFunction<Outputs, CheckpointReport> {
  const config = validateOptions('checkpoint', optionsSchema, options);
  return (source) =>
    new Observable<CheckpointReport>((subscriber) => {
      const sink = new LaneSink(config, subscriber);
      const timer: Subscription = config.scheduler.schedule(function tick() {
        sink.trigger();
        this.schedule(undefined, config.intervalMs);
      }, config.intervalMs);
      const subscription = source.subscribe({
        next: (output) => sink.add(output),
        error: (error: unknown) => subscriber.error(error),
        complete: () => {
          timer.unsubscribe();
          sink.end();
        },
      });
      return () => {
        timer.unsubscribe();
        subscription.unsubscribe();
      };
    });
}

type CheckpointConfig = z.output<typeof optionsSchema>;

/** One subscription of `checkpoint`: the lane's outputs that wait, the commit under way and the offset committed last. */
class LaneSink {
  private readonly lane: Lane;
  private pending: Outputs[] = [];
  private committing: Promise<void> | undefined;
  private again = false;
  private sourceDone = false;
  private committedOffset = -1;

  constructor(
    private readonly config: CheckpointConfig,
    private readonly subscriber: Subscriber<CheckpointReport>,
  ) {
    this.lane = config.lane;
  }

  add(output: Outputs): void {
    this.lane.markProcessed(output.covers);
    this.pending.push(output);
    // A lane that reads nothing until records are released makes no more outputs: waiting for more (or for the
    // interval) would stall it.
    if (this.pending.length >= this.config.maxPendingOutputs || this.lane.waitsForRelease) this.trigger();
  }

  /** The source completed: commit what is left, then complete. */
  end(): void {
    this.sourceDone = true;
    this.trigger();
  }

  /** Starts a commit, or asks for another one right after the commit under way. */
  trigger(): void {
    if (this.committing) {
      this.again = true;
      return;
    }
    this.committing = this.commitOnce()
      .catch((error: unknown) => this.onCommitFailed(error))
      .finally(() => {
        this.committing = undefined;
        if (this.again) {
          this.again = false;
          this.trigger();
        } else if (this.sourceDone && !this.subscriber.closed) {
          this.subscriber.complete();
        }
      });
  }

  private async commitOnce(): Promise<void> {
    const { lane } = this;
    await lane.whenCommitAllowed();
    if (lane.revoked) {
      this.pending = [];
      return;
    }
    const before = Math.max(this.committedOffset, lane.startOffset);
    const { ready, frontier } = committable(this.pending, lane.processedFrontier());
    // Nothing new: no outputs, and the offset to commit is the one already committed (or started from).
    if (ready.length === 0 && frontier <= before) return;
    const started = Date.now();
    const requests = batchRequests(ready, this.config.maxRequestBytes);
    await this.write(requests, frontier, before);
    if (lane.revoked) {
      this.pending = [];
      return;
    }
    this.pending = this.pending.filter((output) => !ready.includes(output));
    this.committedOffset = frontier;
    lane.release(frontier);
    this.subscriber.next({
      topic: lane.topic,
      partition: lane.partition,
      offset: frontier,
      messages: requests.reduce((sum, request) => sum + request.reduce((n, t) => n + t.messages.length, 0), 0),
      outputs: ready.length,
      durationMs: Date.now() - started,
    });
  }

  /** Writes the requests and commits `frontier` with them, retrying through outages; `before` is the offset committed until now. */
  private async write(requests: readonly TopicMessages[][], frontier: number, before: number): Promise<void> {
    const { lane, config } = this;
    let attempted = false;
    const attempt = async () => {
      if (lane.revoked) return;
      if (config.mode === 'at-least-once') {
        for (const topicMessages of requests) await config.producer!.sendBatch({ topicMessages, acks: -1 });
        if (!lane.revoked) await lane.commitOffset(frontier);
        return;
      }
      if (attempted) {
        // The last attempt failed in an unknown state: it may have committed before the broker went away.
        const committed = await lane.recover();
        if (committed === frontier) return;
        if (committed !== before) throw new LaneLostError(lane, committed);
      }
      attempted = true;
      await this.commitTransaction(requests, frontier);
    };
    // A fenced producer is retried too: the next attempt first recovers the lane, which ends it (LaneLostError)
    // when another member owns the partition, and otherwise commits the same outputs with a fresh producer.
    const retriable = (error: unknown) => !(error instanceof LaneLostError) && (isFenced(error) || isTransient(error));
    await withRetry(attempt, untilHealed(config.outageToleranceMs, retriable));
  }

  /**
   * One Kafka transaction on the lane's producer: the requests and the group offset, aborted if the lane was revoked
   * meanwhile. A rebalance may close the producer mid-transaction (and the partition's next owner fence it). A kafkajs
   * client used after its disconnect connects again, so the transaction stops at its next step once the producer is
   * no longer the lane's (the next owner's fence ends it), and a request that was in flight then is followed by
   * another disconnect.
   */
  private async commitTransaction(requests: readonly TopicMessages[][], frontier: number): Promise<void> {
    const { lane } = this;
    const producer = lane.transactionalProducer;
    if (!producer) throw new CheckpointError(lane, frontier, new Error('the lane has no transactional producer: pass exactlyOnce to fromKafka'));
    try {
      await this.transact(producer, requests, frontier);
    } finally {
      if (lane.transactionalProducer !== producer) await producer.disconnect().catch(() => {});
    }
  }

  private async transact(producer: Producer, requests: readonly TopicMessages[][], frontier: number): Promise<void> {
    const { lane } = this;
    const closed = () => lane.transactionalProducer !== producer;
    const stopIfClosed = () => {
      if (closed()) throw new LaneLostError(lane, undefined);
    };
    const offsets = [{ topic: lane.topic, partitions: [{ partition: lane.partition, offset: String(frontier) }] }];
    const transaction = await producer.transaction();
    try {
      const written: WrittenMessage[] = [];
      for (const topicMessages of requests) {
        stopIfClosed();
        const answers = await transaction.sendBatch({ topicMessages });
        if (this.config.beforeCommit) written.push(...writtenMessages(topicMessages, answers));
      }
      const veto = this.config.beforeCommit?.(written);
      if (veto !== undefined) {
        await transaction.abort();
        lane.revoke(`checkpoint vetoed: ${veto}`);
        return;
      }
      stopIfClosed();
      await transaction.sendOffsets({ consumerGroupId: lane.groupId, topics: offsets });
      stopIfClosed();
      if (lane.revoked) await transaction.abort();
      else await transaction.commit();
    } catch (error) {
      // A fenced producer's abort fails the same way, and a closed one would connect again: the fence ends it.
      if (!isFenced(error) && !closed()) await transaction.abort().catch(() => {});
      throw error;
    }
  }

  private onCommitFailed(error: unknown): void {
    const { lane, pending } = this;
    if (!(error instanceof LaneLostError || lane.revoked)) {
      this.subscriber.error(error instanceof CheckpointError ? error : new CheckpointError(lane, lane.processedFrontier(), error));
      return;
    }
    // Another member owns the partition now and reads it from the last committed offset; a commit that failed
    // because the lane was taken away (its producer closed mid-transaction) is that too. Nothing of this lane can be
    // committed any more: end it, so that it holds up no drain.
    const span = pending.length > 0 ? `, offsets ${Math.min(...pending.map(lowestCovered))}–${Math.max(...pending.map(highestCovered))}` : '';
    lane.revoke(`${error instanceof LaneLostError ? `fenced: ${error.message}` : 'revoked during a commit'}; ${pending.length} output(s) not committed${span}`);
    this.pending = [];
  }
}
