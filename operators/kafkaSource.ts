import { randomUUID } from 'node:crypto';
import { AssignerProtocol, type Admin, type Consumer, type ConsumerConfig, type ConsumerEndBatchProcessEvent, type EachBatchPayload, type KafkaMessage, type PartitionAssigner } from 'kafkajs';
import type { Subscriber, Subscription } from 'rxjs';
import { StreamgradError } from '../schemas/errors.js';
import { SourceError } from './errors.js';
import type { SourceConfig } from './fromKafka.js';
import { endOffsetsOf, laneKey, parseLaneKey, stableCommittedOffset, startOffsetOf } from './kafkaOffsets.js';
import { Lane, type KafkaRecord } from './lane.js';
import { LaneProducers } from './laneProducers.js';
import { isTransient, untilHealed, withRetry, type RetryOptions } from './retry.js';

/**
 * The longest a fetch waits on the broker for records, and the longest kafkajs sleeps when every assigned partition is
 * paused: as patched (`patches/kafkajs+2.2.4.patch`), resuming a partition wakes it, so a lane resumed meanwhile does
 * not wait out the rest.
 */
const pausedPollMs = 100;

function toRecord(topic: string, partition: number, message: KafkaMessage): KafkaRecord {
  return { topic, partition, offset: message.offset, key: message.key, value: message.value, timestamp: message.timestamp, headers: message.headers ?? {} };
}

/**
 * kafkajs restarts a consumer that crashed on a retriable error (a broker away): until it has rejoined, pause, resume
 * and seek throw. Nothing is fetched meanwhile, and the rejoin assigns every partition afresh (as a member with a new
 * id, whose lanes are all reopened), so a call that finds the consumer restarting has nothing to do.
 */
function control(call: () => void): void {
  try {
    call();
  } catch (error) {
    if (!/consumer#run must be called first/.test((error as Error)?.message ?? '')) throw error;
  }
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
 * One subscription of `fromKafka`: its consumer and admin client, one {@link Lane} per assigned partition, the
 * lanes' transactional producers, and the group membership they depend on. See `fromKafka` for the contract.
 */
export class KafkaSource {
  private readonly direct: boolean;
  private readonly groupId: string;
  private readonly consumer: Consumer;
  private readonly admin: Admin;
  private readonly producers: LaneProducers;
  /** A broker that is away (an outage, a restart) heals: wait for it this long before giving up. */
  private readonly transient: RetryOptions;
  private readonly lanes = new Map<string, Lane>();
  /** Lanes that know their start offset and may take records. */
  private readonly ready = new Set<string>();
  /** Bounded mode: where each partition ends (exclusive). */
  private readonly endOffsets = new Map<string, number>();
  private readonly listeners: Array<() => void> = [];
  /** The partitions the group assigned this member last. */
  private assigned = new Set<string>();
  private memberId: string | undefined;
  private assignedOnce = false;
  private draining = false;
  /** `until` emitted with `catchUpOnStopMs`: lanes read on to their end offsets before the drain. */
  private catchingUp = false;
  private finishing = false;
  private closed = false;
  private untilSubscription: Subscription | undefined;
  private shutDownOnce: Promise<void> | undefined;
  /** A shutdown began: start-up stops at its next step, and its errors no longer end the Observable. */
  private stopping = false;
  /** Start-up up to the group join (connecting, end offsets, subscribing); a shutdown waits for it, never for the join. */
  private connecting: Promise<void> = Promise.resolve();
  /** Lanes being prepared (fencing, finding the start offset): a shutdown waits for them before it disconnects. */
  private readonly preparing = new Set<Promise<void>>();
  /** How start-up and lane preparations wait for a broker that is away: as {@link transient}, until a shutdown begins. */
  private readonly whileRunning: RetryOptions;

  constructor(
    private readonly config: SourceConfig,
    private readonly subscriber: Subscriber<Lane>,
  ) {
    const { kafka } = config;
    // As the user gave it (fromKafka's options check only that `consumer` is an object).
    const retry = config.consumer.retry as ConsumerConfig['retry'];
    this.direct = config.groupId === undefined;
    this.groupId = config.groupId ?? `streamgrad-direct-${randomUUID()}`;
    this.consumer = kafka.consumer({
      groupId: this.groupId,
      readUncommitted: config.readUncommitted,
      maxWaitTimeInMs: pausedPollMs,
      ...(this.direct ? { partitionAssigners: [directAssigner(config.partitions)] } : {}),
      ...config.consumer,
      // kafkajs restarts a consumer that crashed (here: one that joined after its disconnect and found no broker) on a
      // timer set after that disconnect; a stopped source's consumer must not come back.
      retry: { ...retry, restartOnFailure: async (error: Error) => !this.stopping && (await (retry?.restartOnFailure?.(error) ?? true)) },
    });
    this.admin = kafka.admin();
    this.transient = untilHealed(config.outageToleranceMs);
    this.whileRunning = { ...this.transient, retriable: (error) => !this.stopping && isTransient(error) };
    this.producers = new LaneProducers(kafka, config.exactlyOnce, this.transient);
  }

  /** Connects, captures the end offsets of a bounded read, joins the group and starts fetching. Failures end the Observable. */
  start(): void {
    this.untilSubscription = this.config.until?.subscribe(() => (this.config.catchUpOnStopMs > 0 ? this.catchUpThenDrain() : this.drain()));
    this.connecting = this.connect();
    this.connecting.then(() => this.join()).catch((error: unknown) => {
      if (!this.stopping) this.fail(error);
    });
  }

  /** The subscriber went away. */
  close(): void {
    this.closed = true;
    void this.shutDown();
  }

  /**
   * Connects, captures the end offsets of a bounded read and subscribes. A source stopped meanwhile (`until` emitted,
   * or the subscriber left) goes no further, and stops waiting for a broker that is away: a client that connects after
   * the shutdown's disconnect would keep its sockets open, and the process alive.
   */
  private async connect(): Promise<void> {
    const { admin, consumer, config } = this;
    await withRetry(() => admin.connect(), this.whileRunning);
    const bounded = config.bounded;
    if (bounded !== false) {
      for (const topic of config.topics) {
        if (this.stopping) return;
        // A partition between leaders (a broker of a cluster just lost) answers LEADER_NOT_AVAILABLE for a moment.
        const ends = await withRetry(() => endOffsetsOf(admin, topic, bounded), this.whileRunning);
        for (const [key, end] of ends) this.endOffsets.set(key, end);
      }
    }
    if (this.stopping) return;
    const { GROUP_JOIN, REBALANCING, CRASH, END_BATCH_PROCESS } = consumer.events;
    this.listeners.push(
      consumer.on(GROUP_JOIN, (event) => {
        const lost = this.memberId !== undefined && this.memberId !== event.payload.memberId;
        this.memberId = event.payload.memberId;
        this.onAssignment(event.payload.memberAssignment, lost);
      }),
      consumer.on(REBALANCING, () => {
        for (const lane of this.lanes.values()) lane.suspend();
      }),
      consumer.on(CRASH, (event) => {
        if (!event.payload.restart) this.fail(event.payload.error);
      }),
      consumer.on(END_BATCH_PROCESS, (event) => this.onBatchEnd(event)),
    );
    await consumer.connect();
    if (this.stopping) return;
    await consumer.subscribe({ topics: [...config.topics], fromBeginning: true });
  }

  /**
   * Joins the group and starts fetching. kafkajs goes on joining, and then fetches, after a disconnect made meanwhile,
   * so a source stopped during the join disconnects again once it has joined. A shutdown does not wait for the join:
   * with members being killed, a join can take as long as the group's rebalance timeout.
   */
  private async join(): Promise<void> {
    if (this.stopping) return;
    await this.consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: (payload) => this.eachBatch(payload) });
    if (this.stopping) await this.consumer.disconnect();
  }

  private readonly fail = (error: unknown): void => {
    if (!this.closed) this.subscriber.error(error instanceof StreamgradError ? error : new SourceError(String((error as Error)?.message ?? error), error));
  };

  /** Completes once every lane is drained: after `until` emitted, or in bounded mode once each lane reached its end. */
  private readonly finishIfDrained = (): void => {
    if (this.closed || this.finishing || !(this.draining || this.catchingUp || (this.config.bounded !== false && this.assignedOnce))) return;
    for (const lane of this.lanes.values()) if (!lane.isDrained) return;
    // Leave the group and close the producers before completing, so a process can exit right after.
    this.finishing = true;
    void this.shutDown().then(() => this.subscriber.complete(), this.fail);
  };

  /** `until` emitted: stop fetching and complete every lane; the source completes once they have committed. */
  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    control(() => this.consumer.pause(this.config.topics.map((topic) => ({ topic }))));
    for (const lane of this.lanes.values()) lane.complete();
    this.finishIfDrained();
  }

  /**
   * `until` emitted with `catchUpOnStopMs`: takes on no new partition, reads each open lane up to its partition's end
   * offset as of now (the last stable offset: a transaction still open ends it), and drains once every lane is there
   * or the time is up.
   */
  private catchUpThenDrain(): void {
    if (this.catchingUp || this.draining) return;
    this.catchingUp = true;
    const deadline = setTimeout(() => this.drain(), this.config.catchUpOnStopMs);
    this.listeners.push(() => clearTimeout(deadline));
    const topics = [...new Set([...this.lanes.values()].map((lane) => lane.topic))];
    Promise.all(topics.map((topic) => endOffsetsOf(this.admin, topic, true)))
      .then((ends) => {
        if (this.draining || this.closed) return;
        for (const [key, end] of ends.flatMap((byLane) => [...byLane])) if (!this.endOffsets.has(key)) this.endOffsets.set(key, end);
        for (const [key, lane] of this.lanes) {
          if (!this.atEnd(key, lane)) continue;
          control(() => this.consumer.pause([{ topic: lane.topic, partitions: [lane.partition] }]));
          lane.complete();
        }
        this.finishIfDrained();
      })
      .catch(() => this.drain());
  }

  private shutDown(): Promise<void> {
    this.stopping = true;
    return (this.shutDownOnce ??= (async () => {
      this.untilSubscription?.unsubscribe();
      for (const remove of this.listeners) remove();
      const producers = [...this.lanes.values()].map((lane) => {
        lane.complete();
        return this.producers.close(lane);
      });
      this.lanes.clear();
      // A client used after its disconnect connects again: let start-up and the lanes' preparations see the stop first.
      await this.connecting.catch(() => undefined);
      await Promise.allSettled(this.preparing);
      await Promise.allSettled([this.consumer.disconnect(), this.admin.disconnect(), ...producers]);
    })());
  }

  private onAssignment(assignment: Record<string, number[]>, lost: boolean): void {
    this.assignedOnce = true;
    this.assigned = new Set<string>();
    for (const [topic, partitions] of Object.entries(assignment)) for (const partition of partitions) this.assigned.add(laneKey(topic, partition));
    for (const [key, lane] of this.lanes) {
      // A member that comes back under a new id was expelled (its session timed out, or its consumer restarted):
      // every partition it had may have moved on meanwhile, so every lane it had is lost, even one assigned to it
      // again; that one starts afresh from the committed offset.
      if (lost) this.dropLane(key, lane, 'lost: this member was expelled from the group (its session timed out or its consumer restarted), so another member may have taken the partition over');
      else if (this.assigned.has(key)) lane.resumeAfterRebalance();
      else this.dropLane(key, lane);
    }
    for (const key of this.assigned) this.openLane(key);
    this.finishIfDrained();
  }

  private openLane(key: string): void {
    // A draining source takes on no new partition: it leaves the group once its lanes are committed, and the
    // partition's next owner reads it from the committed offset.
    if (this.lanes.has(key) || this.draining || this.catchingUp || this.closed) return;
    const { topic, partition } = parseLaneKey(key);
    const lane: Lane = new Lane(topic, partition, this.groupId, this.config.maxInFlight, {
      pause: () => control(() => this.consumer.pause([{ topic, partitions: [partition] }])),
      resume: () => {
        if (!this.draining && this.lanes.get(key) === lane) control(() => this.consumer.resume([{ topic, partitions: [partition] }]));
      },
      commitOffset: async (offset) => {
        if (!this.direct) await this.consumer.commitOffsets([{ topic, partition, offset: String(offset) }]);
      },
      recover: (): Promise<number | undefined> => this.recoverLane(lane),
      revoked: () => this.reopenIfStillOwned(lane),
      heldPartitions: () => [...this.assigned].filter((held) => parseLaneKey(held).topic === topic).length,
      producer: () => this.producers.get(lane),
    });
    this.lanes.set(key, lane);
    this.listeners.push(lane.onRelease(this.finishIfDrained));
    this.subscriber.next(lane);
    const preparing = this.prepareLane(lane).catch((error: unknown) => {
      if (!this.stopping) this.fail(error);
    });
    this.preparing.add(preparing);
    void preparing.finally(() => this.preparing.delete(preparing));
  }

  /** Fences the partition's previous owner (exactly-once), finds the start offset and lets the partition be fetched. */
  private async prepareLane(lane: Lane): Promise<void> {
    const key = laneKey(lane.topic, lane.partition);
    await this.producers.open(lane, this.whileRunning);
    const offset = await withRetry(() => this.startOffset(lane.topic, lane.partition), this.whileRunning);
    if (this.lanes.get(key) !== lane) {
      await this.producers.close(lane);
      return;
    }
    lane.startAt(offset);
    if (this.atEnd(key, lane)) {
      this.completeLane(lane);
      return;
    }
    control(() => this.consumer.seek({ topic: lane.topic, partition: lane.partition, offset: String(offset) }));
    this.ready.add(key);
    if (!this.draining) control(() => this.consumer.resume([{ topic: lane.topic, partitions: [lane.partition] }]));
  }

  private async startOffset(topic: string, partition: number): Promise<number> {
    // Without a group, the private one holds only what this source's own transactions committed: a lane reopened after
    // a fenced or vetoed checkpoint resumes there, not at `start` (which would train the committed records twice).
    if (!this.config.ignoreCommitted) {
      const offset = await stableCommittedOffset(this.admin, this.groupId, topic, partition);
      if (offset >= 0) return offset;
    }
    return startOffsetOf(this.admin, topic, partition, this.config.start);
  }

  /** Bounded mode: whether the lane has reached its end offset. */
  private atEnd(key: string, lane: Lane): boolean {
    const end = this.endOffsets.get(key);
    return end !== undefined && lane.position >= end;
  }

  private completeLane(lane: Lane): void {
    lane.complete();
    this.finishIfDrained();
  }

  /** Ends a lane that the source takes away (a rebalance, a lost membership); its producer closes. */
  private dropLane(key: string, lane: Lane, reason?: string): void {
    this.lanes.delete(key);
    this.ready.delete(key);
    lane.revoke(reason);
    void this.producers.close(lane);
  }

  /** Whether the group, stable, assigns the lane's partition to this member, as long as `valid` holds. */
  private async stillOwns(lane: Lane, valid: () => boolean): Promise<boolean> {
    if (!valid()) return false;
    const { groups } = await this.admin.describeGroups([this.groupId]);
    const group = groups[0];
    // A group mid-rebalance, or empty after a broker restart until its members rejoin, is asked again (as long as
    // `valid` holds: a rejoin under a new member id, a drop or the end stop the asking).
    if (group?.state !== 'Stable') throw new SourceError(`group ${this.groupId} is ${group?.state ?? 'gone'}; asking again`, undefined, true);
    if (!valid()) return false;
    const member = group.members.find((m) => m.memberId === this.memberId);
    if (!member || member.memberAssignment.length === 0) return false;
    const assignment = AssignerProtocol.MemberAssignment.decode(member.memberAssignment);
    return assignment?.assignment[lane.topic]?.includes(lane.partition) ?? false;
  }

  /** See `LaneControl.recover`. */
  private async recoverLane(lane: Lane): Promise<number | undefined> {
    await lane.whenCommitAllowed();
    // The lane is still this member's under the membership it was opened in: a member that rejoined under a new id
    // dropped every lane it had (and the group's answer about the new id says nothing about the old lane).
    const member = this.memberId;
    const current = () => !lane.revoked && this.lanes.get(laneKey(lane.topic, lane.partition)) === lane && this.memberId === member;
    if (!current()) return undefined;
    if (!(await withRetry(() => this.stillOwns(lane, current), this.transient)) || !current()) return undefined;
    if (!(await this.producers.replace(lane, current))) return undefined;
    return withRetry(() => stableCommittedOffset(this.admin, this.groupId, lane.topic, lane.partition), this.transient);
  }

  /**
   * After a lane ended by itself (its checkpoint found it fenced) while the group still assigns its partition here,
   * a new lane takes the partition on, if the stable group confirms this member owns it: a lane lost for good would
   * leave the partition assigned here and read by no one. The new lane fences the producer again and reads the
   * committed offset, as after any takeover.
   */
  private reopenIfStillOwned(lane: Lane): void {
    const key = laneKey(lane.topic, lane.partition);
    if (this.lanes.get(key) !== lane) return;
    this.dropLane(key, lane);
    // A draining (or catching-up) source opens no lane again: the lane just dropped may have been the last it waited
    // for. Without this a worker whose last checkpoint was vetoed during its drain never left the group, and held its
    // partitions with no lane open (chaos seed 9558).
    if (this.draining || this.catchingUp) {
      this.finishIfDrained();
      return;
    }
    control(() => this.consumer.pause([{ topic: lane.topic, partitions: [lane.partition] }]));
    // Until a rebalance, a drain or the end settles the partition's fate anyway.
    const member = this.memberId;
    const open = () => !this.draining && !this.closed && this.memberId === member && this.assigned.has(key) && !this.lanes.has(key);
    void withRetry(() => this.stillOwns(lane, open), this.transient)
      .then((owned) => {
        if (owned && open()) this.openLane(key);
      })
      .catch(this.fail);
  }

  private async eachBatch({ batch, resolveOffset, heartbeat, pause, isRunning, isStale }: EachBatchPayload): Promise<void> {
    const key = laneKey(batch.topic, batch.partition);
    const lane = this.lanes.get(key);
    if (!lane || !this.ready.has(key) || lane.isComplete) {
      pause();
      return;
    }
    lane.highWatermark = Number(batch.highWatermark);
    if (!isRunning() || isStale()) return;
    const { lastEmitted, full } = this.offer(lane, key, batch.messages);
    // Resolving (a Long parse in kafkajs) once per batch, for the last record emitted, is enough: the next fetch starts after it.
    if (lastEmitted !== undefined) resolveOffset(lastEmitted);
    if (full) {
      lane.pause();
      return;
    }
    if (!isStale()) lane.skipTo(Number(batch.lastOffset()) + 1);
    if (this.atEnd(key, lane)) {
      pause();
      this.completeLane(lane);
    }
    await heartbeat();
  }

  /** Hands a batch's messages to the lane, up to its end offset or until it is full. */
  private offer(lane: Lane, key: string, messages: readonly KafkaMessage[]): { readonly lastEmitted: string | undefined; readonly full: boolean } {
    const end = this.endOffsets.get(key);
    let lastEmitted: string | undefined;
    for (const message of messages) {
      if (end !== undefined && Number(message.offset) >= end) break;
      if (lane.isFull) return { lastEmitted, full: true };
      lane.offer(toRecord(lane.topic, lane.partition, message));
      lastEmitted = message.offset;
    }
    return { lastEmitted, full: false };
  }

  /** kafkajs resolves batches that held only transaction markers or aborted records without calling eachBatch. */
  private onBatchEnd(event: ConsumerEndBatchProcessEvent): void {
    if (event.payload.batchSize !== 0) return;
    const key = laneKey(event.payload.topic, event.payload.partition);
    const lane = this.lanes.get(key);
    if (!lane || !this.ready.has(key)) return;
    lane.skipTo(Number(event.payload.lastOffset) + 1);
    if (this.atEnd(key, lane)) this.completeLane(lane);
  }
}
