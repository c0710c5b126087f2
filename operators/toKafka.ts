import type { Kafka, Producer } from 'kafkajs';
import { asyncScheduler, bufferTime, concatMap, filter, finalize, from, mergeMap, Observable, type OperatorFunction, type SchedulerLike } from 'rxjs';
import { z } from 'zod';
import { batchRequests, type Outputs } from './checkpoint.js';
import { withRetry } from './retry.js';
import { validateOptions } from './validateOptions.js';

/** Options of {@link toKafka}: a producer to write with, or a client to make an idempotent one from. */
export interface ToKafkaOptions {
  /** An idempotent producer; it stays open after the stream ends. */
  readonly producer?: Producer;
  /** Or a client: toKafka then makes its own idempotent producer and disconnects it at the end. */
  readonly kafka?: Kafka;
  /** Send at most this often, in ms: outputs arriving meanwhile share one request. Default 20. */
  readonly lingerMs?: number;
  /** Send as soon as this many `Outputs` wait. Default 1,000. */
  readonly maxBatchOutputs?: number;
  /** Cut requests at about this many bytes. Default 512 KiB. */
  readonly maxRequestBytes?: number;
  readonly scheduler?: SchedulerLike;
}

const optionsSchema = z
  .object({
    producer: z.custom<Producer>((value) => typeof value === 'object' && value !== null && 'sendBatch' in value, 'must be a kafkajs Producer').optional(),
    kafka: z.custom<Kafka>((value) => typeof value === 'object' && value !== null && 'producer' in value, 'must be a kafkajs Kafka client').optional(),
    lingerMs: z.number().int().nonnegative().default(20),
    maxBatchOutputs: z.number().int().positive().default(1_000),
    maxRequestBytes: z.number().int().positive().default(512 * 1024),
    scheduler: z.custom<SchedulerLike>().default(asyncScheduler),
  })
  .refine((o) => (o.producer === undefined) !== (o.kafka === undefined), { message: 'give exactly one of producer or kafka', path: ['producer'] });

/**
 * Writes `Outputs` to Kafka with an idempotent producer (acks = all), batching
 * what arrives within `lingerMs`. Emits each `Outputs` once the broker has
 * acknowledged it, in order, so a downstream `lane.ack` or counter knows it is
 * durable. At-least-once: pair it with acknowledgements, or use `checkpoint`.
 */
export function toKafka(options: ToKafkaOptions): OperatorFunction<Outputs, Outputs> {
  const config = validateOptions('toKafka', optionsSchema, options);
  return (source) =>
    new Observable<Outputs>((subscriber) => {
      const owned = config.kafka ? config.kafka.producer({ idempotent: true, maxInFlightRequests: 1 }) : undefined;
      const producer = owned ?? config.producer!;
      const connected = owned ? owned.connect() : Promise.resolve();
      const send = async (outputs: Outputs[]) => {
        await connected;
        await sendOutputs(producer, outputs, config.maxRequestBytes);
        return outputs;
      };
      return source
        .pipe(
          bufferTime(config.lingerMs, null, config.maxBatchOutputs, config.scheduler),
          filter((batch) => batch.length > 0),
          concatMap((batch) => from(send(batch))),
          mergeMap((batch) => batch),
          finalize(() => void connected.then(() => owned?.disconnect()).catch(() => {})),
        )
        .subscribe(subscriber);
    });
}

/** Writes the outputs' messages in requests of about `maxRequestBytes`, each acknowledged by all in-sync replicas. */
async function sendOutputs(producer: Producer, outputs: readonly Outputs[], maxRequestBytes: number): Promise<void> {
  for (const topicMessages of batchRequests(outputs, maxRequestBytes)) await withRetry(() => producer.sendBatch({ topicMessages, acks: -1 }));
}
