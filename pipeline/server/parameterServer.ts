import { hostname } from 'node:os';
import { concatMap, from, ignoreElements, lastValueFrom, map, mergeMap, Observable, Subject, tap } from 'rxjs';
import { checkpoint, type CheckpointReport, type Outputs } from '../../operators/checkpoint.js';
import { fromKafka } from '../../operators/fromKafka.js';
import { shardMessage } from '../../operators/parameterUpdates.js';
import { closedWindows } from '../../operators/prequential.js';
import type { ModelSnapshot } from '../../schemas/types.js';
import { lossOf } from '../common/model.js';
import type { Kafka, Message } from 'kafkajs';
import { deadLetterMessage } from '../../operators/deadLetter.js';
import { spanOf, type KafkaRecord, type Lane, type OffsetSpan } from '../../operators/lane.js';
import { RefusedUpdateError } from '../../schemas/errors.js';
import { codecFor } from '../../schemas/codec.js';
import type { ExperimentConfig } from '../common/config.js';
import type { Logger } from 'pino';
import { logFnOf, roleLogger, type LogFn } from '../common/log.js';
import { createKafka, groupTimings } from '../common/kafkaClient.js';
import { latestSnapshots } from '../common/modelStore.js';
import { Replica } from '../worker/replica.js';
import { createServerMetrics, type ServerMetrics } from '../common/metrics.js';
import { ShardState, type UpdateOutcome } from './shardState.js';
import { ensureNamespaceTopics, type NamespaceTopics } from '../common/topics.js';
import { selectBackend } from '../common/backend.js';
import { UpdateKeys } from '../common/updateSigning.js';

/** What a server reports per snapshot it publishes. */
export interface SnapshotReport {
  readonly shard: number;
  readonly version: number;
  readonly samplesApplied: number;
  /** The sum of the reported losses over samplesApplied. */
  readonly lossSum: number;
  readonly samplesDroppedStale: number;
  readonly deadLettered: number;
  readonly samplesRefused: number;
  readonly updatesRefused: number;
  readonly freshnessMs: number;
}

/** A running parameter server. */
export interface ParameterServer {
  readonly serverId: string;
  /** Each snapshot as it is made (committed shortly after, with the offsets it accounts for). */
  readonly snapshots: Observable<SnapshotReport>;
  /** Each update taken in, with what became of it. */
  readonly outcomes: Observable<UpdateOutcome>;
  /** Per update, ms from its oldest sample's append to Kafka until the commit of the first snapshot that includes it. */
  readonly freshness: Observable<number>;
  /** Freshness and staleness histograms and update counters, for Prometheus. */
  readonly metrics: ServerMetrics;
  stop(): void;
  readonly done: Promise<void>;
  /** The server's logger: the process's, with the fields role, server and namespace. */
  readonly logger: Logger;
}

/**
 * Starts a parameter server: a member of `<ns>.ps` on `<ns>.updates`, whose
 * partitions are its shards. For each shard it owns it loads the latest
 * committed snapshot from `<ns>.model` (or the seeded initial weights), applies
 * updates with the configured optimizer and staleness policy, and every
 * `snapshotEveryUpdates` updates or `snapshotIntervalMs` publishes a
 * `ModelSnapshot`, committed in one transaction with the `updates` offsets it
 * accounts for: a restarted or new owner resumes exactly where it left off.
 */
export async function startParameterServer(config: ExperimentConfig, options: { log?: LogFn } = {}): Promise<ParameterServer> {
  const serverId = `${hostname()}-${process.pid}`;
  const logger = roleLogger({ role: 'ps', server: serverId, namespace: config.namespace });
  const log = options.log ?? logFnOf(logger);
  // Read first: a key that cannot be read stops the server before it connects.
  const keys = UpdateKeys.load(config.updateSigning?.keys);
  if (keys) log(`taking only updates signed with one of the keys ${config.updateSigning!.keys.map((key) => `'${key.id}'`).join(', ')}`);
  const kafka = createKafka(config, `streamgrad-ps-${serverId}`, logger);
  const admin = kafka.admin();
  await admin.connect();
  const topics = await ensureNamespaceTopics(admin, config.namespace, config.model.shards).finally(() => admin.disconnect());
  // The seeded initial weights come from the same model builder as the workers'.
  const backend = await selectBackend({ backend: config.backend });
  const initial = new Replica(config.model);
  const initialWeights = initial.weights().map((w) => ({ ...w, shard: initial.shardOf(w.name) }));
  initial.dispose();

  const stop$ = new Subject<void>();
  const serving = new Serving(kafka, config, topics, initialWeights, createServerMetrics(config.namespace, backend), log, keys);
  const lanes = fromKafka({
    kafka,
    topics: [topics.updates],
    groupId: topics.serverGroup,
    exactlyOnce: { transactionalIdPrefix: `${config.namespace}.ps` },
    until: stop$,
    catchUpOnStopMs,
    consumer: groupTimings(config.sessionTimeoutMs),
  });
  const done = lastValueFrom(lanes.pipe(mergeMap((lane) => serving.lanePipeline(lane)), ignoreElements()), { defaultValue: undefined }).finally(() => serving.complete());

  return {
    serverId,
    logger,
    snapshots: serving.snapshotReports.asObservable(),
    outcomes: serving.outcomes.asObservable(),
    freshness: serving.freshness.asObservable(),
    metrics: serving.metrics,
    stop: () => stop$.next(),
    done,
  };
}

/**
 * How long a stopping server goes on applying the updates committed before the stop: after `run` has stopped its
 * workers, the last snapshots then account for every record they committed.
 */
export const catchUpOnStopMs = 15_000;

/**
 * A shard with no update to take in still publishes a snapshot once its position passed this many offsets of
 * aborted records and markers: fewer are the markers of the last committed transactions, not worth a snapshot.
 */
const skippedWorthASnapshot = 2;

/** The seeded initial weights of every variable, with the shard that owns it. */
type InitialWeights = ReadonlyArray<ReturnType<Replica["weights"]>[number] & { readonly shard: number }>;

/** A snapshot published and not yet committed: the last update offset it covers, and its updates' append times. */
interface AwaitingCommit {
  readonly lastOffset: number;
  readonly appendTimes: readonly number[];
}

/** What the server's lanes (one per shard it owns) share: the codecs, the metrics and the report streams. */
class Serving {
  readonly snapshotReports = new Subject<SnapshotReport>();
  readonly outcomes = new Subject<UpdateOutcome>();
  readonly freshness = new Subject<number>();
  private readonly updates = codecFor('ParameterUpdate');
  private readonly snapshots = codecFor('ModelSnapshot');
  private readonly deadLetterCodec = codecFor('DeadLetter');

  constructor(
    private readonly kafka: Kafka,
    private readonly config: ExperimentConfig,
    private readonly topics: NamespaceTopics,
    private readonly initialWeights: InitialWeights,
    readonly metrics: ServerMetrics,
    private readonly log: LogFn,
    /** With `updateSigning`: the keys an update must be signed with. */
    private readonly keys: UpdateKeys | undefined,
  ) {}

  complete(): void {
    this.snapshotReports.complete();
    this.outcomes.complete();
    this.freshness.complete();
  }

  /** One shard: its updates in, its snapshots out, each committed with the update offsets it accounts for. */
  lanePipeline(lane: Lane): Observable<CheckpointReport> {
    const awaitingCommit: AwaitingCommit[] = [];
    return this.snapshotOutputs(lane, awaitingCommit).pipe(
      checkpoint({ lane, intervalMs: this.config.server.snapshotIntervalMs, maxPendingOutputs: 1 }),
      tap((report) => this.observeFreshness(lane.partition, awaitingCommit, report.offset)),
    );
  }

  /** The shard's latest committed snapshot, read after the lane has fenced the previous owner. */
  private async loadShard(lane: Lane): Promise<ShardState> {
    const { config, log } = this;
    await lane.started;
    const latest = (await latestSnapshots(this.kafka, config.namespace, [lane.partition])).get(lane.partition);
    if (latest) {
      log(`shard ${lane.partition}: resuming from snapshot version ${latest.version} at ${this.topics.updates}[${lane.partition}]@${lane.startOffset}`, { shard: lane.partition });
      return ShardState.fromSnapshot(latest, config.model, config.batchSize);
    }
    log(`shard ${lane.partition}: starting from the initial weights`, { shard: lane.partition });
    return ShardState.initial(config.namespace, lane.partition, config.model, this.initialWeights.filter((w) => w.shard === lane.partition), config.batchSize);
  }

  /**
   * The lane's records taken into its shard, and a snapshot output every `snapshotEveryUpdates` updates, every
   * `snapshotIntervalMs`, once no update has come for `snapshotIdleMs` (the workers, holding their share of updates in
   * flight, wait for it), and at the end.
   */
  private snapshotOutputs(lane: Lane, awaitingCommit: AwaitingCommit[]): Observable<Outputs> {
    const loaded = this.loadShard(lane);
    const { snapshotEveryUpdates, snapshotIntervalMs, snapshotIdleMs } = this.config.server;
    return new Observable<Outputs>((subscriber) => {
      const pending = new PendingSnapshot();
      let state: ShardState | undefined;
      // Records handed over by the lane and taken in: once equal, every record below the lane's position is taken in.
      let delivered = 0;
      let taken = 0;
      let publishedThrough = -1;
      const publish = () => {
        if (!state) return;
        const through = delivered === taken ? lane.position : -1;
        // Nothing taken in, but the position passed aborted records (a worker vetoed its checkpoint for staleness):
        // a snapshot that says so lets the workers' next updates count from past them.
        if (pending.isEmpty && through - Math.max(publishedThrough, lane.startOffset) < skippedWorthASnapshot) return;
        const output = this.publish(state, pending, awaitingCommit, through);
        publishedThrough = awaitingCommit.at(-1)!.lastOffset + 1;
        subscriber.next(output);
      };
      // A shard that cannot load fails its lane now, not as an unhandled rejection when no update comes. One that
      // loads can publish before its first update: a shard whose updates since its snapshot are all aborted (every
      // checkpoint vetoed after a restart) must still say that its position passed them, or the workers, counting
      // staleness from the old offset, veto every update for ever (chaos seed 0).
      loaded.then((ready) => (state ??= ready), (error: unknown) => subscriber.error(error));
      const timer = setInterval(publish, snapshotIntervalMs);
      let idle: NodeJS.Timeout | undefined;
      const subscription = lane.records.pipe(tap(() => delivered++), concatMap((record) => from(loaded).pipe(map((ready) => ((state = ready), record))))).subscribe({
        next: (record) => {
          taken++;
          pending.add(record, this.takeRecord(state!, record));
          clearTimeout(idle);
          if (pending.size >= snapshotEveryUpdates) publish();
          else idle = setTimeout(publish, snapshotIdleMs);
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => {
          publish();
          subscriber.complete();
        },
      });
      return () => {
        clearInterval(timer);
        clearTimeout(idle);
        subscription.unsubscribe();
      };
    });
  }

  /**
   * Makes the shard's next snapshot from what is pending, and empties it. `through`: the lane's position when every
   * record below it is taken in (the snapshot's `updatesOffset` then also passes the transaction markers and aborted
   * records there), or -1.
   */
  private publish(state: ShardState, pending: PendingSnapshot, awaitingCommit: AwaitingCommit[], through: number): Outputs {
    const { covers, refusals } = pending.take();
    const appendTimes = state.takeAppendTimes();
    const lastOffset = Math.max(covers.at(-1)?.last ?? -1, through - 1);
    awaitingCommit.push({ lastOffset, appendTimes });
    const snapshot = state.snapshot(Date.now(), this.config.model.shards, appendTimes, lastOffset + 1, this.config.prequential);
    const { version, samplesApplied, lossSum, samplesDroppedStale, deadLettered, samplesRefused, updatesRefused, freshnessMs } = snapshot;
    this.snapshotReports.next({ shard: state.shard, version, samplesApplied, lossSum, samplesDroppedStale, deadLettered, samplesRefused, updatesRefused, freshnessMs });
    this.observeScores(snapshot);
    // The refused records' dead letters commit with the snapshot that counts them.
    const messages = [{ topic: this.topics.model, messages: [shardMessage(state.shard, this.snapshots.encode(snapshot))] }];
    if (refusals.length > 0) messages.push({ topic: this.topics.serverDeadLetters, messages: refusals });
    return { messages, covers };
  }

  /**
   * Takes one record of the shard's updates partition into its state. No record can stop the shard: one it
   * refuses is counted by reason and comes back as the dead letter for `<ns>.ps.dlq`.
   */
  private takeRecord(state: ShardState, record: KafkaRecord): Message | undefined {
    const { metrics } = this;
    const { staleness, clipNorm, maxAbsGradient } = this.config.server;
    const shard = state.shard;
    // An unsigned or forged record is refused before it is even decoded: nothing in it counts.
    const unsigned = this.keys?.refusal(record.value, record.headers);
    const decoded = unsigned === undefined ? this.updates.decode(record.value, record) : undefined;
    const update = decoded?.ok ? decoded.value : undefined;
    if (update) metrics.staleness.observe({ shard }, state.stalenessOf(update));
    const result = update
      ? state.take(update, staleness, clipNorm, maxAbsGradient)
      : unsigned !== undefined
        ? state.refuse('SIGNATURE', unsigned)
        : state.refuse('DECODE', decoded && !decoded.ok ? decoded.error.message : '');
    metrics.updates.inc({ shard, outcome: result.outcome });
    this.outcomes.next(result.outcome);
    if (result.outcome === 'refused') {
      metrics.refused.inc({ shard, reason: result.reason });
      metrics.samples.inc({ shard, outcome: 'refused' }, result.sampleCount);
      const error = new RefusedUpdateError(result.reason, record, result.detail);
      this.log(`shard ${shard}: ${error.message}`, { shard });
      return deadLetterMessage({ record, error }, this.deadLetterCodec, Date.now());
    }
    if (result.outcome !== 'counted') metrics.samples.inc({ shard, outcome: result.outcome }, update!.sampleCount);
    metrics.deadLetters.inc({ shard }, update!.deadLettered);
    return undefined;
  }

  /** Shard 0's last closed prequential window, on /metrics. */
  private observeScores(snapshot: ModelSnapshot): void {
    const last = closedWindows(snapshot).at(-1);
    if (snapshot.shard !== 0 || !last) return;
    const { prequential } = this.metrics;
    prequential.set({ score: 'window_start' }, last.start / 1000);
    prequential.set({ score: 'loss' }, last.loss);
    if (lossOf(this.config.model) === 'mse') {
      prequential.set({ score: 'mae' }, last.mae);
      prequential.set({ score: 'rmse' }, last.rmse);
    } else prequential.set({ score: 'accuracy' }, last.accuracy);
  }

  /** After a commit up to `committed`: each update of the snapshots it includes is now fresh that many ms after its append. */
  private observeFreshness(shard: number, awaitingCommit: AwaitingCommit[], committed: number): void {
    const now = Date.now();
    while (awaitingCommit.length > 0 && awaitingCommit[0]!.lastOffset < committed) {
      for (const appended of awaitingCommit.shift()!.appendTimes) {
        this.metrics.freshness.observe({ shard }, now - appended);
        this.freshness.next(now - appended);
      }
    }
  }
}

/** The update records a shard's next snapshot accounts for, and the dead letters of those it refused. */
class PendingSnapshot {
  private covers: OffsetSpan[] = [];
  private refusals: Message[] = [];

  get size(): number {
    return this.covers.length;
  }

  get isEmpty(): boolean {
    return this.covers.length === 0;
  }

  add(record: KafkaRecord, refusal: Message | undefined): void {
    if (refusal) this.refusals.push(refusal);
    this.covers.push(spanOf(record));
  }

  take(): { readonly covers: OffsetSpan[]; readonly refusals: Message[] } {
    const taken = { covers: this.covers, refusals: this.refusals };
    this.covers = [];
    this.refusals = [];
    return taken;
  }
}
