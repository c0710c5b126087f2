import type { ConsumerConfig, Kafka } from 'kafkajs';
import { Observable, type Observable as ObservableType } from 'rxjs';
import { z } from 'zod';
import type { EndPosition, StartPosition } from './kafkaOffsets.js';
import { KafkaSource } from './kafkaSource.js';
import type { Lane } from './lane.js';
import { validateOptions } from './validateOptions.js';

export type { EndPosition, StartPosition } from './kafkaOffsets.js';

/** Options of {@link fromKafka}. */
export interface FromKafkaOptions {
  /** The kafkajs client to read with. */
  readonly kafka: Kafka;
  readonly topics: readonly string[];
  /**
   * The consumer group. Without one, partitions are assigned directly, in a private group: only `checkpoint`'s
   * exactly-once transactions commit offsets there, and a lane that ends and opens again resumes from them.
   */
  readonly groupId?: string;
  /** Without a group: which partitions to read (default all), the same for every topic. */
  readonly partitions?: readonly number[];
  /** Where to start without a committed offset. Default `earliest`. */
  readonly start?: StartPosition;
  /** Start from `start` even where the group has committed offsets. Default false. */
  readonly ignoreCommitted?: boolean;
  /** Capture the end offsets at start (see {@link EndPosition}) and complete once every lane reaches them. Default false. */
  readonly bounded?: boolean | EndPosition;
  /** The most records one lane holds before its partition is paused. Default 10,000. */
  readonly maxInFlight?: number;
  /** One transactional producer per input partition (transactionalId `<prefix>.<topic>.<partition>`), for `checkpoint`'s exactly-once mode. */
  readonly exactlyOnce?: { readonly transactionalIdPrefix: string; readonly transactionTimeoutMs?: number };
  /** When this emits, stop fetching, complete every lane, wait until each has committed what it emitted, leave the group and complete. */
  readonly until?: ObservableType<unknown>;
  /**
   * When `until` emits, first read each open lane up to its partition's end offset at that moment (what is committed
   * by then), for at most this many ms, and only then stop. Default 0: stop at once.
   */
  readonly catchUpOnStopMs?: number;
  /** Read records of aborted transactions too. Default false (read_committed). */
  readonly readUncommitted?: boolean;
  /** Further kafkajs consumer settings (sessionTimeout, maxBytesPerPartition, …). */
  readonly consumer?: Partial<ConsumerConfig>;
  /** How long a lane waits for a broker that went away (outage, restart) before the source fails, in ms. Default 300,000. */
  readonly outageToleranceMs?: number;
}

const optionsSchema = z.object({
  kafka: z.custom<Kafka>((value) => typeof value === 'object' && value !== null && typeof (value as Kafka).consumer === 'function', 'must be a kafkajs Kafka client'),
  topics: z.array(z.string().min(1)).min(1, 'needs at least one topic'),
  groupId: z.string().min(1).optional(),
  partitions: z.array(z.number().int().nonnegative()).min(1).optional(),
  start: z
    .union([
      z.literal('earliest'),
      z.literal('latest'),
      z.object({ timestamp: z.number().int().nonnegative() }),
      z.object({ offsets: z.record(z.string().regex(/^.+:\d+$/, 'keys are topic:partition'), z.number().int().nonnegative()) }),
    ])
    .default('earliest'),
  ignoreCommitted: z.boolean().default(false),
  bounded: z
    .union([
      z.boolean(),
      z.object({ timestamp: z.number().int().nonnegative() }),
      z.object({ offsets: z.record(z.string().regex(/^.+:\d+$/, 'keys are topic:partition'), z.number().int().nonnegative()) }),
    ])
    .default(false),
  maxInFlight: z.number().int().positive().default(10_000),
  exactlyOnce: z.object({ transactionalIdPrefix: z.string().min(1), transactionTimeoutMs: z.number().int().positive().default(60_000) }).optional(),
  until: z.custom<ObservableType<unknown>>((value) => value instanceof Observable, 'must be an Observable').optional(),
  catchUpOnStopMs: z.number().int().nonnegative().default(0),
  readUncommitted: z.boolean().default(false),
  consumer: z.record(z.string(), z.unknown()).default({}),
  outageToleranceMs: z.number().int().positive().default(300_000),
});

/** The options of {@link fromKafka}, parsed: defaults filled in. */
export type SourceConfig = z.output<typeof optionsSchema>;

/**
 * Reads Kafka as an Observable of {@link Lane}s: one lane per assigned
 * partition, emitted when the partition is assigned, whose `records` are in
 * offset order. Lanes run in parallel; downstream usually is
 * `mergeMap(lane => lane.records.pipe(…, checkpoint({ lane })))`.
 *
 * - Backpressure: a lane holds at most `maxInFlight` records that are not yet
 *   committed or acknowledged; a full lane pauses its partition and resumes it
 *   once half are released. kafkajs keeps heartbeating meanwhile, so a slow
 *   step never costs the group membership.
 * - Rebalances: a revoked lane completes, and nothing of it is committed after
 *   the revoke. With `exactlyOnce`, a new lane first fences the previous
 *   owner's producer, then reads the committed offset, so a zombie cannot
 *   commit behind it.
 * - Bounded mode: the end offsets are captured at start; each lane completes
 *   at its end, and the Observable completes once every lane has committed.
 * - Shutdown: unsubscribing (or `until`) at any point, start-up included,
 *   closes every client the source opened, so the process can exit. A member
 *   that leaves in the middle of its group's rebalance closes its last socket
 *   once that rebalance ends.
 *
 * @example
 * fromKafka({ kafka, topics: ['telemetry'], groupId: 'ns.workers', exactlyOnce: { transactionalIdPrefix: 'ns' } })
 *   .pipe(mergeMap((lane) => lane.records.pipe(map(toOutput), checkpoint({ lane }))));
 */
export function fromKafka(options: FromKafkaOptions): ObservableType<Lane> {
  const config = validateOptions('fromKafka', optionsSchema, options);
  return new Observable<Lane>((subscriber) => {
    const source = new KafkaSource(config, subscriber);
    source.start();
    return () => source.close();
  });
}
