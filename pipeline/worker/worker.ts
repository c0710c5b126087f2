import { hostname } from 'node:os';
import { concat, concatMap, defer, ignoreElements, finalize, firstValueFrom, from, lastValueFrom, map, mergeMap, Observable, race, Subject, tap, timer, type OperatorFunction } from 'rxjs';
import { checkpoint, type CheckpointReport, type Outputs, type WrittenMessage } from '../../operators/checkpoint.js';
import { countWindow, type BatchConsumer } from '../../operators/countWindow.js';
import { deadLetterMessage } from '../../operators/deadLetter.js';
import type { Rejected } from '../../operators/decode.js';
import { fromKafka, type EndPosition, type StartPosition } from '../../operators/fromKafka.js';
import { gradientStep, type GradientModel, type TrainingBatch } from '../../operators/gradientStep.js';
import { appendTimes, baseOf, updateMessages, type UpdateSigner } from '../../operators/parameterUpdates.js';
import { UpdateKeys } from '../common/updateSigning.js';
import type { KafkaRecord, Lane } from '../../operators/lane.js';
import { codecFor } from '../../schemas/codec.js';
import { SampleDecoder } from '../../schemas/sampleDecoder.js';
import type { OffsetRange } from '../../schemas/types.js';
import { selectBackend, type BackendName } from '../common/backend.js';
import { minimumBoundFactor, type ExperimentConfig } from '../common/config.js';
import type { Logger } from 'pino';
import { logFnOf, roleLogger, type LogFn } from '../common/log.js';
import { createKafka, groupTimings, partitionDiscoveryMs } from '../common/kafkaClient.js';
import { createWorkerMetrics, type LaneWait, type WorkerMetrics } from '../common/metrics.js';
import type { Kafka } from 'kafkajs';
import { SnapshotDecodeError } from '../common/errors.js';
import { LaneWindow } from './laneWindow.js';
import { Replica } from './replica.js';
import { WarmUp } from './warmUp.js';
import { ensureNamespaceTopics, type NamespaceTopics } from '../common/topics.js';

/** A running worker. */
export interface Worker {
  readonly workerId: string;
  readonly backend: BackendName;
  readonly replica: Replica;
  /** Samples, dead letters, step times and lag, for Prometheus. */
  readonly metrics: WorkerMetrics;
  /** Samples stepped on and records dead-lettered so far (made into outputs; committed once `done` resolves). */
  trained(): { readonly samples: number; readonly deadLettered: number };
  /** Every committed checkpoint of every lane. */
  readonly checkpoints: Observable<CheckpointReport>;
  /** Finish the open checkpoints, commit, leave the group; `done` resolves after. */
  stop(): void;
  /** Resolves once the worker has stopped; rejects if it failed. */
  readonly done: Promise<void>;
  /** The worker's logger: the process's, with the fields role, worker and namespace. */
  readonly logger: Logger;
}

// Codecs are built once: dead-letter batches come from every lane.
const deadLetterCodec = codecFor('DeadLetter');

/**
 * The server sees an update only once its transaction commits, and a lane holding maxInFlightUpdates waits for the
 * server: a lane commits by half that many outputs, at most this many (for freshness), or idles until the next
 * checkpoint interval.
 */
const maxOutputsPerCheckpoint = 8;
/**
 * Fetch sizes smaller than kafkajs' 1 MB per partition and 10 MB per response: kafkajs decodes a whole response in
 * one go, and every broker round trip of a checkpoint's transaction waited behind it (commit p50 355 → 260 ms in the
 * bench).
 */
const fetchBytes = { maxBytesPerPartition: 256 * 1024, maxBytes: 2 * 1024 * 1024 };
/**
 * How long a lane holds its next step while its replica is so far behind the updates it knows of that the step's
 * update would surely exceed the staleness bound (policy `retrain`): the wait for a fresher snapshot is a hint, the
 * checkpoint's veto is the bound.
 */
const behindWaitMs = 1_000;
/** How often a worker says what its drain still waits for. */
const drainReportMs = 10_000;
const updateCodec = codecFor('ParameterUpdate');

/**
 * The dead letters of a stretch of a lane, and, for every shard, an update with
 * no gradients that counts them: both commit in the lane's checkpoint, so each
 * rejected record is in the dead-letter topic and in the snapshots' counters
 * exactly once.
 */
function deadLetterOutputs(rejected: readonly Rejected[], config: ExperimentConfig, topics: NamespaceTopics, workerId: string, replica: Replica, sign: UpdateSigner | undefined): Outputs {
  const now = Date.now();
  const byPartition = new Map<string, OffsetRange>();
  for (const { record } of rejected) {
    const key = `${record.topic}:${record.partition}`;
    const offset = Number(record.offset);
    const range = byPartition.get(key);
    byPartition.set(key, range ? { ...range, firstOffset: Math.min(range.firstOffset, offset), lastOffset: Math.max(range.lastOffset, offset) } : { topic: record.topic, partition: record.partition, firstOffset: offset, lastOffset: offset });
  }
  const body = { namespace: config.namespace, workerId, sampleCount: 0, lossSum: 0, deadLettered: rejected.length, offsets: [...byPartition.values()], ...appendTimes(rejected.map((r) => Number(r.record.timestamp))), createdAt: now };
  const counts = updateMessages(body, replica.shardCount, (shard) => replica.base(shard), () => [], updateCodec, undefined, sign);
  return {
    messages: [
      { topic: topics.deadLetters, messages: rejected.map((one) => deadLetterMessage(one, deadLetterCodec, now)) },
      { topic: topics.updates, messages: counts },
    ],
    covers: rejected.map(({ record }) => ({ first: Number(record.offset), last: Number(record.offset) })),
  };
}

/** A bounded read of the input, for replays: these partitions, one after another (or all at once), from `start` to `end`. */
export interface WorkerRange {
  readonly partitions: readonly number[];
  readonly start: StartPosition;
  readonly end: EndPosition;
  /** Read the partitions all at once, interleaved as live training reads them, instead of one after another. */
  readonly interleave?: boolean;
}

/** Options of {@link startWorker}. */
export interface WorkerOptions {
  /** Where the worker logs (default: the process's logger, with the fields role, worker and namespace). */
  readonly log?: LogFn;
  /** Read this range and stop (no consumer group), instead of joining `<ns>.workers` on the whole topic. */
  readonly range?: WorkerRange;
}

/**
 * Starts a worker: one member of `<ns>.workers` on the input topic. Per lane it
 * decodes and checks samples (bad ones to `<ns>.dlq`), cuts micro-batches,
 * takes a gradient step on its replica per batch and commits the updates with
 * the input offsets in one transaction per checkpoint. It tails `<ns>.model`
 * to keep the replica fresh, and holds a lane back while more than
 * `maxInFlightUpdates` of its updates are not yet in a snapshot it has seen.
 */
export async function startWorker(config: ExperimentConfig, options: WorkerOptions = {}): Promise<Worker> {
  const workerId = config.workerId ?? `${hostname()}-${process.pid}`;
  const logger = roleLogger({ role: 'worker', worker: workerId, namespace: config.namespace });
  const log = options.log ?? logFnOf(logger);
  // Read first: a key that cannot be read stops the worker before it connects.
  const keys = UpdateKeys.load(config.updateSigning?.keys);
  const backend = await selectBackend({ backend: config.backend });
  log(`TensorFlow.js backend: ${backend}`);
  if (keys) log(`signing updates with key '${keys.signingKeyId}'`);
  const kafka = createKafka(config, `streamgrad-worker-${workerId}`, logger);
  const admin = kafka.admin();
  await admin.connect();
  const topics = await ensureNamespaceTopics(admin, config.namespace, config.model.shards).finally(() => admin.disconnect());

  const replica = new Replica(config.model, { stepSamples: config.batchSize });
  // A replay that reads one partition at a time gives it the job's whole budget of updates in flight.
  const range = options.range;
  const partitions = range ? () => Promise.resolve(range.interleave ? range.partitions.length : 1) : () => inputPartitionCount(kafka, config.inputTopic);
  // A replay of a range reads what it is given, in its own order: no lane leads it.
  const warmUp = new WarmUp(range ? 0 : config.warmupSteps * config.batchSize, replica.snapshots, log);
  const training = new Training(config, topics, workerId, replica, backend, log, partitions, warmUp, !range, keys && ((value) => keys.sign(value)));
  // The tail outlives the input: while a stopping worker commits its last checkpoints, their staleness is checked
  // against fresh snapshots (a tail stopped with the input froze them, and had every last checkpoint vetoed).
  const inputClosed = new Subject<void>();
  const tailer = tailSnapshots(kafka, config.namespace, topics.model, training, log, inputClosed);
  const consumer = { ...groupTimings(config.sessionTimeoutMs), metadataMaxAge: partitionDiscoveryMs, ...fetchBytes };
  const source = { kafka, topics: [config.inputTopic], exactlyOnce: { transactionalIdPrefix: topics.workerTransactions }, maxInFlight: config.maxInFlight, until: training.stop$, consumer };
  const trained = range
    ? (async () => {
        // One partition after another: with sync mode, a replay is then a deterministic function of its range.
        for (const partitions of range.interleave ? [range.partitions] : range.partitions.map((partition) => [partition])) {
          if (training.stopping) return;
          await training.run(fromKafka({ ...source, partitions, start: range.start, bounded: range.end }));
        }
      })()
    : training.run(fromKafka({ ...source, groupId: topics.workerGroup }));

  // What a drain still waits for, for the reports of a slow one.
  const settled = { input: false, tail: false };
  void trained
    .finally(() => {
      settled.input = true;
      inputClosed.next();
    })
    .catch(() => {});
  void tailer.finally(() => (settled.tail = true)).catch(() => {});
  const done = trained
    .finally(() => training.stop())
    .then(() => tailer)
    .finally(() => {
      training.checkpoints.complete();
      replica.dispose();
    });

  return {
    workerId,
    backend,
    replica,
    metrics: training.metrics,
    trained: () => ({ samples: training.samplesTrained, deadLettered: training.deadLettered }),
    checkpoints: training.checkpoints.asObservable(),
    stop: () => {
      if (!training.stop()) return;
      // A drain that takes long says what it waits for.
      const waitingFor = () => [settled.input ? '' : `the input (${config.inputTopic}) to close`, settled.tail ? '' : `the tail of ${topics.model} to close`].filter(Boolean).join(' and ') || 'nothing';
      const report = setInterval(() => log(`still draining: ${training.describeLanes()}; waiting for ${waitingFor()}`), drainReportMs);
      void done.finally(() => clearInterval(report)).catch(() => {});
    },
    done,
    logger,
  };
}

/**
 * Tails `<ns>.model` into the replica until `until` emits (the input has closed). A failing tail stops the worker, and its error comes out
 * of `done`: left alone until training ended, it was an unhandled rejection, which the wasm runtime's handler turns
 * into exit code 7.
 */
function tailSnapshots(kafka: Kafka, namespace: string, modelTopic: string, training: Training, log: LogFn, until: Observable<void>): Promise<void> {
  const snapshotCodec = codecFor('ModelSnapshot');
  const { replica } = training;
  const apply = (lane: Lane, record: KafkaRecord) => {
    const snapshot = snapshotCodec.decode(record.value, record);
    // The replica keeps the weights it has: the next snapshot of the shard brings it up to date.
    if (!snapshot.ok) log(`${new SnapshotDecodeError(record, snapshot.error.message).message}; skipped`);
    else if (snapshot.value.namespace === namespace) replica.applySnapshot(snapshot.value);
    lane.ack(record.offset);
  };
  const snapshots = fromKafka({ kafka, topics: [modelTopic], start: 'earliest', until }).pipe(mergeMap((lane) => lane.records.pipe(tap((record) => apply(lane, record)))));
  const tail = lastValueFrom(snapshots.pipe(ignoreElements()), { defaultValue: undefined });
  tail.catch((error: unknown) => {
    log(`the tail of ${modelTopic} failed: ${(error as Error)?.message ?? String(error)}; stopping`);
    training.stop();
  });
  return tail;
}

/** The input topic's partition count, from the broker's metadata. */
async function inputPartitionCount(kafka: Kafka, topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
    return Math.max(1, topics[0]?.partitions.length ?? 1);
  } finally {
    await admin.disconnect();
  }
}

/** What a worker's lanes share: the replica, the counters, the open lanes and the stop signal. */
/** A lane's windows cut and not yet trained: the lane is busy while there are any (see `countWindow`'s `downstream`). */
class WindowsInTraining implements BatchConsumer {
  private count = 0;
  private readonly free = new Subject<void>();
  readonly freed = this.free.asObservable();
  busy(): boolean {
    return this.count > 0;
  }
  enter(): void {
    this.count += 1;
  }
  leave(): void {
    this.count -= 1;
    if (this.count === 0) this.free.next();
  }
}

class Training {
  samplesTrained = 0;
  deadLettered = 0;
  stopping = false;
  /** Emits once when the worker stops: every source drains, and every wait for a snapshot ends. */
  readonly stop$ = new Subject<void>();
  readonly checkpoints = new Subject<CheckpointReport>();
  readonly metrics: WorkerMetrics;
  private readonly lanes = new Set<Lane>();
  /**
   * A lane's checkpoint vetoed over the staleness bound: why, and the records it held then. Counted when the lane ends
   * for that reason (a lane revoked meanwhile, by a rebalance or a stop, ended for that one instead), so that the
   * metric and the log line of each retrain agree.
   */
  private readonly vetoes = new WeakMap<Lane, { readonly reason: string; readonly inFlight: number }>();
  /** With policy `retrain`: the staleness bound the worker's checkpoints keep. */
  private readonly stalenessBound: number | undefined;
  /** Per shard: the end of `<ns>.updates[shard]` as far as this worker's own writes tell. */
  private readonly updatesEnd: number[] = [];
  private warnedTightBound = false;
  /** The job's budget of updates not yet in a snapshot, over all lanes of all workers: each lane has an equal share. */
  private readonly maxInFlightUpdates: number;
  /** The input partitions the budget is shared by (read when the first lane opens, again for a lane beyond them). */
  private partitionCount = 0;
  private counting: Promise<number> | undefined;
  private readonly samples: SampleDecoder;
  /** The replica, with each gradient step timed and counted. */
  private readonly timedModel: GradientModel;
  constructor(
    private readonly config: ExperimentConfig,
    private readonly topics: NamespaceTopics,
    readonly workerId: string,
    readonly replica: Replica,
    backend: BackendName,
    private readonly log: LogFn,
    private readonly countPartitions: () => Promise<number>,
    /** The job's warm-up, which lanes other than the leading one wait for before they train. */
    private readonly warmUp: WarmUp,
    /** Whether the worker reads the input as a member of the workers' group, which may share it with others. */
    private readonly inGroup: boolean,
    /** With `updateSigning`: signs every update record with the namespace's first key. */
    private readonly sign: UpdateSigner | undefined,
  ) {
    this.metrics = createWorkerMetrics(config.namespace, workerId, backend, () => [...this.lanes].map((lane) => ({ topic: lane.topic, partition: lane.partition, lag: lane.lag })), () => replica.foreignStaleness());
    this.maxInFlightUpdates = config.sync ? 0 : config.maxInFlightUpdates;
    this.stalenessBound = config.server.staleness.policy === 'retrain' ? config.server.staleness.bound : undefined;
    const { spec } = replica;
    this.samples = new SampleDecoder({ featureCount: spec.kind === 'timeseries' ? spec.window * spec.features : spec.features, labelCount: spec.outputs, ...config.input });
    this.timedModel = {
      shardCount: replica.shardCount,
      shardOf: (name) => replica.shardOf(name),
      base: (shard) => replica.base(shard),
      gradients: (batch) => {
        const endTimer = this.metrics.stepSeconds.startTimer();
        replica.setDataShare(this.dataShare());
        const result = replica.gradients(batch);
        endTimer();
        this.samplesTrained += batch.length;
        this.metrics.samples.inc(batch.length);
        return result;
      },
    };
  }

  /** Trains every lane of the source; resolves once the source completed and every lane committed. */
  run(source: Observable<Lane>): Promise<void> {
    const reports = source.pipe(
      mergeMap((lane) => this.lanePipeline(lane)),
      tap((report) => {
        this.metrics.checkpointSeconds.observe(report.durationMs / 1000);
        this.checkpoints.next(report);
      }),
      ignoreElements(),
    );
    return lastValueFrom(reports, { defaultValue: undefined });
  }

  /** Stops once; false if it was stopping already. */
  stop(): boolean {
    if (this.stopping) return false;
    this.stopping = true;
    this.stop$.next();
    this.stop$.complete();
    return true;
  }

  describeLanes(): string {
    return [...this.lanes].map((lane) => lane.describe()).join('; ') || 'no lane open';
  }

  private lanePipeline(lane: Lane): Observable<CheckpointReport> {
    this.lanes.add(lane);
    const share = this.config.sync || this.maxInFlightUpdates === 0 ? Promise.resolve(0) : this.laneShare(lane);
    return from(share).pipe(concatMap((budgetShare) => this.trainLane(lane, () => this.heldShare(lane, budgetShare))));
  }

  /**
   * A lane's share of the budget, scaled by the fraction of the input's partitions its worker holds now (at least one
   * update): a worker's own updates are in its replica at once, the other workers' only once a snapshot holds them,
   * so where several workers share the input each keeps fewer in flight (the others' updates it lacks are what makes
   * asynchronous training worse than sequential; see BENCHMARKS.md, *A joint warm-up*). A worker alone keeps the
   * whole budget.
   */
  private heldShare(lane: Lane, share: number): number {
    if (!this.inGroup || share === 0 || this.partitionCount === 0) return share;
    return Math.max(1, Math.floor((share * this.heldPartitions(lane)) / this.partitionCount));
  }

  /** The input's partitions that the consumer of `lane` holds now, at most the partition count. */
  private heldPartitions(lane: Lane): number {
    return Math.min(lane.partitionsHeld, this.partitionCount);
  }

  /**
   * The share of the input's partitions this worker's consumer holds now, by which its updates count where the model
   * averages the workers (`model.localSteps`); 1 outside a group, in sync mode, before the partition count is known,
   * and during the joint warm-up, when the leading lane trains alone.
   */
  private dataShare(): number {
    const lane = this.lanes.values().next().value;
    if (!this.inGroup || this.config.sync || this.partitionCount === 0 || !lane || !this.warmUp.done) return 1;
    return this.heldPartitions(lane) / this.partitionCount;
  }

  /** A lane's pipeline, with `allowed()` of its updates not yet in a snapshot at most. */
  private trainLane(lane: Lane, allowed: () => number): Observable<CheckpointReport> {
    const { config, log } = this;
    const pending: number[] = [];
    const training = new WindowsInTraining();
    return lane.records.pipe(
      // Sync mode cuts windows by count alone, so two runs over the same records cut them the same way. Otherwise a
      // window behind its partition's end waits on for the next fetch (while the lane reads), and one cut while the
      // lane waits to train gathers on until the lane is free, instead of going out part-full: every update costs the
      // same to send, commit and apply, and a lane at its share waits a snapshot for each, whatever it holds.
      countWindow(config.batchSize * config.stepsPerUpdate, config.sync ? Number.POSITIVE_INFINITY : config.batchMaxWaitMs, {
        moreComing: () => !lane.waitsForRelease && lane.position < lane.highWatermark,
        collect: LaneWindow.collector(lane, this.samples),
        downstream: training,
      }),
      tap(() => training.enter()),
      concatMap((window) => defer(() => this.waitToTrain(lane, pending, allowed)).pipe(map(() => window))),
      this.trainWindows(lane, pending),
      tap(() => training.leave()),
      // In sync mode a lane ends once its last update shows in the snapshots: the next lane (a replay's next
      // partition) then starts from weights that include it.
      config.sync ? (source) => concat(source, defer(() => this.waitForStaleness(lane, pending, 0)).pipe(ignoreElements())) : (source) => source,
      // A lane at its share waits for its updates to show in a snapshot, which needs them committed: it commits by then.
      checkpoint({
        lane,
        intervalMs: config.checkpointIntervalMs,
        maxPendingOutputs: Math.max(1, Math.min(maxOutputsPerCheckpoint, Math.ceil(allowed() / 2))),
        beforeCommit: this.stalenessBound === undefined ? undefined : (written) => this.vetoTooStale(lane, written, this.stalenessBound!),
      }),
      // After the lane's last commit (or its end without one): a drain that waits on it names it till then.
      finalize(() => {
        this.lanes.delete(lane);
        // Deltas it made that were not committed will never reach the server (the next owner trains those records).
        if (lane.revoked) this.replica.forgetPending(lane);
        if (lane.revokedBecause) log(`${lane.name} ended: ${lane.revokedBecause}`, { topic: lane.topic, partition: lane.partition });
        const veto = this.vetoes.get(lane);
        if (veto && lane.revokedBecause?.includes(veto.reason)) {
          this.metrics.retrains.inc();
          this.metrics.rereadRecords.inc(veto.inFlight);
        }
      }),
    );
  }

  /**
   * A lane's share of the job's budget of updates in flight: `maxInFlightUpdates` over the input partitions, at least
   * one. Every lane of every worker keeping to its share keeps the job's updates not yet in a snapshot within the budget.
   */
  private async laneShare(lane: Lane): Promise<number> {
    if (lane.partition >= this.partitionCount) {
      // Lanes that open together share one reading. A broker that cannot answer now (an outage) leaves the count at
      // what the lanes show; the next lane beyond it asks again.
      this.counting ??= this.countPartitions()
        .catch((error: unknown) => {
          this.log(`cannot read the partition count of ${this.config.inputTopic} (${(error as Error)?.message ?? String(error)}); sharing the budget by the partitions seen`);
          return 0;
        })
        .finally(() => (this.counting = undefined));
      const counted = await this.counting;
      this.partitionCount = Math.max(lane.partition + 1, this.partitionCount, counted);
    }
    const share = Math.max(1, Math.floor(this.maxInFlightUpdates / this.partitionCount));
    const inFlight = share * this.partitionCount;
    if (this.stalenessBound !== undefined && this.stalenessBound < minimumBoundFactor * inFlight && !this.warnedTightBound) {
      this.warnedTightBound = true;
      this.log(`${this.partitionCount} partitions keep ${inFlight} updates in flight (at least one each), more than 1/${minimumBoundFactor} of the staleness bound ${this.stalenessBound}: expect many checkpoints trained again; raise server.staleness.bound to ${minimumBoundFactor * inFlight} or more`);
    }
    return share;
  }

  /** Waits for the warm-up (until it is over), then for the lane's share of updates in flight and the staleness bound. */
  private async waitToTrain(lane: Lane, pending: number[], allowed: () => number): Promise<void> {
    if (!this.warmUp.done) await this.timedWait('warm-up', this.warmUp.wait(lane, this.stop$, () => this.stopping));
    await this.waitForStaleness(lane, pending, allowed());
  }

  /**
   * Waits while more than `allowed` of this lane's updates (their last offsets in `pending`) are not yet reflected in
   * the snapshots; and, for up to {@link behindWaitMs}, while the replica is too far behind for the staleness bound.
   */
  private async waitForStaleness(lane: Lane, pending: number[], allowed: number): Promise<void> {
    const deadline = Date.now() + behindWaitMs;
    for (;;) {
      const reflected = this.replica.reflectedOffset(lane.topic, lane.partition);
      while (pending.length > 0 && pending[0]! <= reflected) pending.shift();
      const waitForBase = Date.now() < deadline && this.tooFarBehind();
      if ((pending.length <= allowed && !waitForBase) || this.stopping || lane.revoked) return;
      const snapshotOrStop = race(this.replica.snapshots, this.stop$);
      const atShare = pending.length > allowed;
      await this.timedWait(atShare ? 'in-flight' : 'behind', firstValueFrom(atShare ? snapshotOrStop : race(snapshotOrStop, timer(Math.max(0, deadline - Date.now()))), { defaultValue: undefined }));
    }
  }

  /** Awaits `wait`, counting its seconds in the lane-wait metric under `reason`. */
  private async timedWait(reason: LaneWait, wait: Promise<unknown>): Promise<void> {
    const started = performance.now();
    try {
      await wait;
    } finally {
      this.metrics.waitSeconds.inc({ reason }, (performance.now() - started) / 1000);
    }
  }

  /** Whether some shard's updates this worker wrote lie at least the staleness bound past the snapshot its replica has. */
  private tooFarBehind(): boolean {
    const bound = this.stalenessBound;
    if (bound === undefined) return false;
    return this.updatesEnd.some((end, shard) => end - this.replica.base(shard).updatesOffset >= bound);
  }

  /**
   * The hard staleness bound (policy `retrain`), checked once a checkpoint's updates are written and before they
   * commit. An update computed on snapshot version `v` at updates offset `u`, and written at offset `o`, is applied
   * after the records between `u` and `o`, so at most that many updates staler. Of those, the ones below the offset
   * `u'` of the newest snapshot the replica has (version `v'`) are known: `v' − v` records. The rest are counted by
   * their offsets, which also counts transaction markers and aborted records. Past the bound, the reason to abort the
   * checkpoint: the lane then reads its uncommitted records again and trains them on a fresher replica.
   */
  private vetoTooStale(lane: Lane, written: readonly WrittenMessage[], bound: number): string | undefined {
    let veto: string | undefined;
    for (const { topic, partition, offset, message } of written) {
      if (topic !== this.topics.updates) continue;
      if (offset >= 0) this.updatesEnd[partition] = Math.max(this.updatesEnd[partition] ?? 0, offset + 1);
      const base = baseOf(message);
      if (veto !== undefined || base === undefined) continue;
      const newest = this.replica.base(partition);
      const known = newest.updatesOffset > base.updatesOffset ? newest : base;
      const atMost = known.version - base.version + Math.max(0, offset - known.updatesOffset);
      if (offset < 0) veto = `the broker did not say where an update for shard ${partition} landed, so its staleness is unknown`;
      else if (atMost > bound) veto = `an update for shard ${partition} computed on version ${base.version} landed at ${topic}[${partition}] offset ${offset}, where it could be applied ${atMost} updates later (the newest snapshot is version ${known.version} at offset ${known.updatesOffset}), over the staleness bound ${bound}`;
    }
    if (veto !== undefined) this.vetoes.set(lane, { reason: veto, inFlight: lane.inFlight });
    return veto;
  }

  /**
   * One output per window of a lane's records: the gradient updates of its good samples and the dead letters
   * (with their count updates) of the rest, covering the whole window. A lane's outputs are then contiguous and in
   * order, so a checkpoint can always commit them: an output that also covered later records (a batch of dead
   * letters gathered across gradient batches) would hold back every update after it, while the lane waits for
   * those very updates to show in a snapshot.
   */
  private trainWindows(lane: Lane, pending: number[]): OperatorFunction<LaneWindow, Outputs> {
    const { config, topics, workerId } = this;
    return (windows) =>
      new Observable<Outputs>((subscriber) => {
        // gradientStep keeps per-lane state (error-feedback residuals) and answers each batch synchronously.
        const batches = new Subject<TrainingBatch>();
        let stepped: Outputs | undefined;
        const steps = batches.pipe(gradientStep({ model: this.timedModel, namespace: config.namespace, workerId, updatesTopic: topics.updates, encoding: config.encoding, prequentialWindowMs: config.prequential.windowMs, sign: this.sign })).subscribe({
          next: (outputs) => (stepped = outputs),
          error: (error: unknown) => subscriber.error(error),
        });
        const step = (good: TrainingBatch) => {
          stepped = undefined;
          batches.next(good);
          return stepped;
        };
        const subscription = windows.subscribe({
          next: (window) => subscriber.next(this.trainWindow(lane, window, pending, step)),
          error: (error: unknown) => subscriber.error(error),
          complete: () => subscriber.complete(),
        });
        return () => {
          subscription.unsubscribe();
          steps.unsubscribe();
        };
      });
  }

  /** The output of one window: `step` trains its good samples (already decoded into columns), and the rest are dead-lettered. */
  private trainWindow(lane: Lane, window: LaneWindow, pending: number[], step: (good: TrainingBatch) => Outputs | undefined): Outputs {
    const { rejected } = window;
    const stepped = step(window.trained);
    const messages = [...(stepped?.messages ?? [])];
    if (stepped) {
      const last = stepped.covers[stepped.covers.length - 1]!.last;
      pending.push(last);
      this.replica.placeLastStep(lane, lane.topic, lane.partition, last);
    }
    if (rejected.length > 0) {
      this.deadLettered += rejected.length;
      this.metrics.deadLetters.inc(rejected.length);
      messages.push(...deadLetterOutputs(rejected, this.config, this.topics, this.workerId, this.replica, this.sign).messages);
    }
    return { messages, covers: [window.covers] };
  }
}
