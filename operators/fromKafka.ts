import { randomUUID } from 'node:crypto';
import { AssignerProtocol, type Admin, type Consumer, type ConsumerConfig, type EachBatchPayload, type Kafka, type KafkaMessage, type PartitionAssigner, type Producer } from 'kafkajs';
import { Observable, type Observable as ObservableType } from 'rxjs';
import { z } from 'zod';
import { StreamgradError } from '../schemas/errors.js';
import { SourceError } from './errors.js';
import { Lane, type KafkaRecord } from './lane.js';
import { isTransient, withRetry } from './retry.js';
import { validateOptions } from './validateOptions.js';

/**
 * Where a lane starts when its consumer group has no committed offset for the
 * partition (always, without a group): the first or the next record, the first
 * record at or after a time (ms since the epoch), or explicit offsets keyed
 * `topic:partition`.
 */
export type StartPosition = 'earliest' | 'latest' | { readonly timestamp: number } | { readonly offsets: Readonly<Record<string, number>> };

/**
 * Where a bounded read ends (exclusive), captured at the start: the end of each
 * partition (`true`), the first record at or after a time, or explicit offsets
 * keyed `topic:partition` (a partition missing from them ends at its end).
 */
export type EndPosition = true | { readonly timestamp: number } | { readonly offsets: Readonly<Record<string, number>> };

/** Options of {@link fromKafka}. */
export interface FromKafkaOptions {
  /** The kafkajs client to read with. */
  readonly kafka: Kafka;
  readonly topics: readonly string[];
  /** The consumer group. Without one, partitions are assigned directly and nothing is committed. */
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
  readUncommitted: z.boolean().default(false),
  consumer: z.record(z.string(), z.unknown()).default({}),
  outageToleranceMs: z.number().int().positive().default(300_000),
});

const laneKey = (topic: string, partition: number) => `${topic}:${partition}`;

function toRecord(topic: string, partition: number, message: KafkaMessage): KafkaRecord {
  return { topic, partition, offset: message.offset, key: message.key, value: message.value, timestamp: message.timestamp, headers: message.headers ?? {} };
}

/** Without a group: a one-member group whose assigner hands that member exactly the requested partitions. */
function directAssigner(partitions: readonly number[] | undefined): PartitionAssigner {
  return ({ cluster }) => ({
    name: 'StreamgradDirect',
    version: 1,
    async assign({ members, topics }) {
      const assignment: Record<string, number[]> = {};
      for (const topic of topics) {
        const all = cluster.findTopicPartitionMetadata(topic).map((p) => p.partitionId);
        assignment[topic] = partitions ? all.filter((p) => partitions.includes(p)) : all;
      }
      return members.map((member, index) => ({
        memberId: member.memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 1, assignment: index === 0 ? assignment : {}, userData: Buffer.alloc(0) }),
      }));
    },
    protocol({ topics }) {
      return { name: 'StreamgradDirect', metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: Buffer.alloc(0) }) };
    },
  });
}

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
 *
 * @example
 * fromKafka({ kafka, topics: ['telemetry'], groupId: 'ns.workers', exactlyOnce: { transactionalIdPrefix: 'ns' } })
 *   .pipe(mergeMap((lane) => lane.records.pipe(map(toOutput), checkpoint({ lane }))));
 */
export function fromKafka(options: FromKafkaOptions): ObservableType<Lane> {
  const config = validateOptions('fromKafka', optionsSchema, options);
  return new Observable<Lane>((subscriber) => {
    const { kafka, topics } = config;
    const direct = config.groupId === undefined;
    const groupId = config.groupId ?? `streamgrad-direct-${randomUUID()}`;
    const consumer: Consumer = kafka.consumer({
      groupId,
      readUncommitted: config.readUncommitted,
      // kafkajs sleeps this long when every assigned partition is paused; a lane resumed meanwhile waits for it.
      maxWaitTimeInMs: 100,
      ...(direct ? { partitionAssigners: [directAssigner(config.partitions)] } : {}),
      ...config.consumer,
    });
    const admin: Admin = kafka.admin();
    const lanes = new Map<string, Lane>();
    // Each lane's transactional producer (exactly-once), handed to the lane's sink through LaneControl.producer.
    const producers = new Map<Lane, Producer>();
    const ready = new Set<string>();
    const endOffsets = new Map<string, number>();
    const listeners: Array<() => void> = [];
    let draining = false;
    let memberId: string | undefined;
    let assignedOnce = false;
    let closed = false;

    // kafkajs restarts a consumer that crashed on a retriable error (a broker away): until it has rejoined, pause,
    // resume and seek throw. Nothing is fetched meanwhile, and the rejoin assigns every partition afresh (as a member
    // with a new id, whose lanes are all reopened), so a call that finds the consumer restarting has nothing to do.
    const control = (call: () => void) => {
      try {
        call();
      } catch (error) {
        if (!/consumer#run must be called first/.test((error as Error)?.message ?? '')) throw error;
      }
    };

    const fail = (error: unknown) => {
      if (!closed) subscriber.error(error instanceof StreamgradError ? error : new SourceError(String((error as Error)?.message ?? error), error));
    };

    let finishing = false;
    const finishIfDrained = () => {
      if (closed || finishing || !(draining || (config.bounded !== false && assignedOnce))) return;
      for (const lane of lanes.values()) if (!lane.isDrained) return;
      // Leave the group and close the producers before completing, so a process can exit right after.
      finishing = true;
      void shutDown().then(() => subscriber.complete(), fail);
    };

    /** Disconnects the lane's transactional producer, once; resolves when it is closed. */
    const closeLane = async (lane: Lane): Promise<void> => {
      const producer = producers.get(lane);
      producers.delete(lane);
      await producer?.disconnect().catch(() => {});
    };

    const startOffset = async (topic: string, partition: number): Promise<number> => {
      if (!direct && !config.ignoreCommitted) {
        const offset = await committedOffset(topic, partition);
        if (offset >= 0) return offset;
      }
      const start = config.start;
      if (start === 'earliest' || start === 'latest') {
        const offsets = await admin.fetchTopicOffsets(topic);
        const found = offsets.find((p) => p.partition === partition);
        return Number(start === 'earliest' ? found?.low ?? 0 : found?.high ?? 0);
      }
      if ('timestamp' in start) {
        const [byTime, ends] = await Promise.all([admin.fetchTopicOffsetsByTimestamp(topic, start.timestamp), admin.fetchTopicOffsets(topic)]);
        const offset = Number(byTime.find((p) => p.partition === partition)?.offset ?? -1);
        // -1: no record at or after that time; start at the end.
        return offset >= 0 ? offset : Number(ends.find((p) => p.partition === partition)?.high ?? 0);
      }
      const explicit = start.offsets[laneKey(topic, partition)];
      if (explicit === undefined) throw new SourceError(`start.offsets has no offset for ${laneKey(topic, partition)}`);
      return explicit;
    };

    /** A transactional producer for the lane's partition. Registering its transactionalId bumps the epoch: the previous owner's producer is fenced and its open transaction aborted, so the committed offset read next is final. */
    const openProducer = async (lane: Lane, exactlyOnce: NonNullable<typeof config.exactlyOnce>): Promise<Producer> => {
      const producer: Producer = kafka.producer({
        transactionalId: `${exactlyOnce.transactionalIdPrefix}.${lane.topic}.${lane.partition}`,
        idempotent: true,
        maxInFlightRequests: 1,
        transactionTimeout: exactlyOnce.transactionTimeoutMs,
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
    };

    // A broker that is away (an outage, a restart) heals: wait for it this long before giving up.
    const transient = { retries: Number.POSITIVE_INFINITY, retriable: isTransient, deadlineMs: config.outageToleranceMs, maxDelayMs: 5_000 };

    // Stable: a transaction's offsets reach the group only once the group coordinator has handled its commit marker,
    // after the commit returned and after the next owner's fencing; until then a plain fetch answers the offset from
    // before the commit, and its records would be trained again. The broker answers UNSTABLE_OFFSET_COMMIT (retried).
    const committedOffset = async (topic: string, partition: number): Promise<number> => {
      const [committed] = await admin.fetchOffsets({ groupId, topics: [topic], requireStable: true });
      return Number(committed?.partitions.find((p) => p.partition === partition)?.offset ?? -1);
    };

    /** Whether the group, stable, assigns the lane's partition to this member, as long as `valid` holds. */
    const stillOwns = async (lane: Lane, valid: () => boolean): Promise<boolean> => {
      if (!valid()) return false;
      const { groups } = await admin.describeGroups([groupId]);
      const group = groups[0];
      // A group mid-rebalance, or empty after a broker restart until its members rejoin, is asked again (as long as
      // `valid` holds: a rejoin under a new member id, a drop or the end stop the asking).
      if (group?.state !== 'Stable') throw new SourceError(`group ${groupId} is ${group?.state ?? 'gone'}; asking again`, undefined, true);
      if (!valid()) return false;
      const member = group.members.find((m) => m.memberId === memberId);
      if (!member || member.memberAssignment.length === 0) return false;
      const assignment = AssignerProtocol.MemberAssignment.decode(member.memberAssignment);
      return assignment?.assignment[lane.topic]?.includes(lane.partition) ?? false;
    };

    const recoverLane = async (lane: Lane): Promise<number | undefined> => {
      await lane.whenCommitAllowed();
      // The lane is still this member's under the membership it was opened in: a member that rejoined under a new id
      // dropped every lane it had (and the group's answer about the new id says nothing about the old lane).
      const member = memberId;
      const current = () => !lane.revoked && lanes.get(laneKey(lane.topic, lane.partition)) === lane && memberId === member;
      if (!current()) return undefined;
      if (!(await withRetry(() => stillOwns(lane, current), transient)) || !current()) return undefined;
      const { exactlyOnce } = config;
      if (exactlyOnce) {
        const old = producers.get(lane);
        producers.delete(lane);
        await old?.disconnect().catch(() => {});
        const producer = await withRetry(() => openProducer(lane, exactlyOnce), transient);
        if (!current()) {
          await producer.disconnect().catch(() => {});
          return undefined;
        }
        producers.set(lane, producer);
      }
      return withRetry(() => committedOffset(lane.topic, lane.partition), transient);
    };

    const prepareLane = async (lane: Lane) => {
      const key = laneKey(lane.topic, lane.partition);
      const { exactlyOnce } = config;
      if (exactlyOnce) producers.set(lane, await withRetry(() => openProducer(lane, exactlyOnce), transient));
      const offset = await withRetry(() => startOffset(lane.topic, lane.partition), transient);
      if (lanes.get(key) !== lane) {
        await closeLane(lane);
        return;
      }
      lane.startAt(offset);
      const end = endOffsets.get(key);
      if (end !== undefined && offset >= end) {
        lane.complete();
        finishIfDrained();
        return;
      }
      control(() => consumer.seek({ topic: lane.topic, partition: lane.partition, offset: String(offset) }));
      ready.add(key);
      if (!draining) control(() => consumer.resume([{ topic: lane.topic, partitions: [lane.partition] }]));
    };

    /** Ends a lane that fromKafka takes away (a rebalance, a lost membership); its producer closes. */
    const dropLane = (key: string, lane: Lane, reason?: string) => {
      lanes.delete(key);
      ready.delete(key);
      lane.revoke(reason);
      void closeLane(lane);
    };

    /** The partitions the group assigned this member last. */
    let assigned = new Set<string>();
    const onAssignment = (assignment: Record<string, number[]>, lost: boolean) => {
      assignedOnce = true;
      assigned = new Set<string>();
      for (const [topic, partitions] of Object.entries(assignment)) for (const partition of partitions) assigned.add(laneKey(topic, partition));
      for (const [key, lane] of lanes) {
        // A member that comes back under a new id was expelled (its session timed out, or its consumer restarted):
        // every partition it had may have moved on meanwhile, so every lane it had is lost, even one assigned to it
        // again; that one starts afresh from the committed offset.
        if (lost) dropLane(key, lane, 'lost: this member was expelled from the group (its session timed out or its consumer restarted), so another member may have taken the partition over');
        else if (assigned.has(key)) lane.resumeAfterRebalance();
        else dropLane(key, lane);
      }
      for (const key of assigned) openLane(key);
      finishIfDrained();
    };

    /**
     * After a lane ended by itself (its checkpoint found it fenced) while the group still assigns its partition here,
     * a new lane takes the partition on, if the stable group confirms this member owns it: a lane lost for good would
     * leave the partition assigned here and read by no one. The new lane fences the producer again and reads the
     * committed offset, as after any takeover.
     */
    const reopenIfStillOwned = (lane: Lane) => {
      const key = laneKey(lane.topic, lane.partition);
      if (lanes.get(key) !== lane) return;
      dropLane(key, lane);
      control(() => consumer.pause([{ topic: lane.topic, partitions: [lane.partition] }]));
      // Until a rebalance, a drain or the end settles the partition's fate anyway.
      const member = memberId;
      const open = () => !draining && !closed && memberId === member && assigned.has(key) && !lanes.has(key);
      void withRetry(() => stillOwns(lane, open), transient)
        .then((owned) => {
          if (owned && open()) openLane(key);
        })
        .catch(fail);
    };

    const openLane = (key: string) => {
      // A draining source takes on no new partition: it leaves the group once its lanes are committed, and the
      // partition's next owner reads it from the committed offset.
      if (lanes.has(key) || draining || closed) return;
      const separator = key.lastIndexOf(':');
      const topic = key.slice(0, separator);
      const partition = Number(key.slice(separator + 1));
      const lane: Lane = new Lane(topic, partition, groupId, config.maxInFlight, {
        pause: () => control(() => consumer.pause([{ topic, partitions: [partition] }])),
        resume: () => {
          if (!draining && lanes.get(key) === lane) control(() => consumer.resume([{ topic, partitions: [partition] }]));
        },
        commitOffset: async (offset) => {
          if (!direct) await consumer.commitOffsets([{ topic, partition, offset: String(offset) }]);
        },
        recover: (): Promise<number | undefined> => recoverLane(lane),
        revoked: () => reopenIfStillOwned(lane),
        producer: () => producers.get(lane),
      });
      lanes.set(key, lane);
      listeners.push(lane.onRelease(finishIfDrained));
      subscriber.next(lane);
      prepareLane(lane).catch(fail);
    };

    const eachBatch = async ({ batch, resolveOffset, heartbeat, pause, isRunning, isStale }: EachBatchPayload) => {
      const key = laneKey(batch.topic, batch.partition);
      const lane = lanes.get(key);
      if (!lane || !ready.has(key) || lane.isComplete) {
        pause();
        return;
      }
      const end = endOffsets.get(key);
      lane.highWatermark = Number(batch.highWatermark);
      if (!isRunning() || isStale()) return;
      // Resolving (a Long parse in kafkajs) once per batch, for the last record emitted, is enough:
      // the next fetch starts after it.
      let lastEmitted: string | undefined;
      let full = false;
      for (const message of batch.messages) {
        const offset = Number(message.offset);
        if (end !== undefined && offset >= end) break;
        if (lane.isFull) {
          full = true;
          break;
        }
        lane.offer(toRecord(batch.topic, batch.partition, message));
        lastEmitted = message.offset;
      }
      if (lastEmitted !== undefined) resolveOffset(lastEmitted);
      if (full) {
        lane.pause();
        return;
      }
      if (!isStale()) lane.skipTo(Number(batch.lastOffset()) + 1);
      if (end !== undefined && lane.position >= end) {
        pause();
        lane.complete();
        finishIfDrained();
      }
      await heartbeat();
    };

    const start = async () => {
      await withRetry(() => admin.connect(), transient);
      const bounded = config.bounded;
      if (bounded !== false) {
        for (const topic of topics) {
          // A partition between leaders (a broker of a cluster just lost) answers LEADER_NOT_AVAILABLE for a moment.
          const [byTime, ends] = await withRetry(() => Promise.all([typeof bounded === 'object' && 'timestamp' in bounded ? admin.fetchTopicOffsetsByTimestamp(topic, bounded.timestamp) : [], admin.fetchTopicOffsets(topic)]), transient);
          for (const { partition, high } of ends) {
            const key = laneKey(topic, partition);
            const atTime = Number(byTime.find((p) => p.partition === partition)?.offset ?? -1);
            const explicit = typeof bounded === 'object' && 'offsets' in bounded ? bounded.offsets[key] : undefined;
            endOffsets.set(key, Math.min(Number(high), explicit ?? (atTime >= 0 ? atTime : Number(high))));
          }
        }
      }
      const { GROUP_JOIN, REBALANCING, CRASH, END_BATCH_PROCESS } = consumer.events;
      listeners.push(
        consumer.on(GROUP_JOIN, (event) => {
          const lost = memberId !== undefined && memberId !== event.payload.memberId;
          memberId = event.payload.memberId;
          onAssignment(event.payload.memberAssignment, lost);
        }),
        consumer.on(REBALANCING, () => {
          for (const lane of lanes.values()) lane.suspend();
        }),
        consumer.on(CRASH, (event) => {
          if (!event.payload.restart) fail(event.payload.error);
        }),
        // kafkajs resolves batches that held only transaction markers or aborted records without calling eachBatch.
        consumer.on(END_BATCH_PROCESS, (event) => {
          if (event.payload.batchSize !== 0) return;
          const key = laneKey(event.payload.topic, event.payload.partition);
          const lane = lanes.get(key);
          if (!lane || !ready.has(key)) return;
          lane.skipTo(Number(event.payload.lastOffset) + 1);
          const end = endOffsets.get(key);
          if (end !== undefined && lane.position >= end) {
            lane.complete();
            finishIfDrained();
          }
        }),
      );
      await consumer.connect();
      await consumer.subscribe({ topics: [...topics], fromBeginning: true });
      await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch });
    };

    const untilSubscription = config.until?.subscribe(() => {
      if (draining) return;
      draining = true;
      control(() => consumer.pause(topics.map((topic) => ({ topic }))));
      for (const lane of lanes.values()) lane.complete();
      finishIfDrained();
    });

    let shutDownOnce: Promise<void> | undefined;
    const shutDown = () =>
      (shutDownOnce ??= (async () => {
        untilSubscription?.unsubscribe();
        for (const remove of listeners) remove();
        const producers = [...lanes.values()].map((lane) => {
          lane.complete();
          return closeLane(lane);
        });
        lanes.clear();
        await Promise.allSettled([consumer.disconnect(), admin.disconnect(), ...producers]);
      })());

    start().catch(fail);

    return () => {
      closed = true;
      void shutDown();
    };
  });
}
