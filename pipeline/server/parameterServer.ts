import { hostname } from 'node:os';
import { concatMap, filter, from, lastValueFrom, map, mergeMap, Observable, Subject, tap } from 'rxjs';
import { checkpoint, type CheckpointReport, type Outputs } from '../../operators/checkpoint.js';
import { fromKafka } from '../../operators/fromKafka.js';
import { shardMessage } from '../../operators/parameterUpdates.js';
import type { Message } from 'kafkajs';
import { deadLetterMessage } from '../../operators/deadLetter.js';
import { spanOf, type KafkaRecord, type Lane, type OffsetSpan } from '../../operators/lane.js';
import { RefusedUpdateError } from '../../schemas/errors.js';
import { codecFor } from '../../schemas/codec.js';
import type { ExperimentConfig } from '../common/config.js';
import { createKafka, groupTimings } from '../common/kafkaClient.js';
import { latestSnapshots } from '../common/modelStore.js';
import { Replica } from '../worker/replica.js';
import { createServerMetrics, type ServerMetrics } from '../common/metrics.js';
import { ShardState, type UpdateOutcome } from './shardState.js';
import { ensureNamespaceTopics } from '../common/topics.js';
import { selectBackend } from '../common/backend.js';

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
export async function startParameterServer(config: ExperimentConfig, options: { log?: (line: string) => void } = {}): Promise<ParameterServer> {
  const log = options.log ?? ((line: string) => console.error(line));
  const serverId = `${hostname()}-${process.pid}`;
  const kafka = createKafka({ clientId: `streamgrad-ps-${serverId}`, brokers: config.brokers });
  const admin = kafka.admin();
  await admin.connect();
  const topics = await ensureNamespaceTopics(admin, config.namespace, config.model.shards).finally(() => admin.disconnect());
  // The seeded initial weights come from the same model builder as the workers'.
  const backend = await selectBackend({ backend: config.backend });
  const initial = new Replica(config.model);
  const initialWeights = initial.weights().map((w) => ({ ...w, shard: initial.shardOf(w.name) }));
  initial.dispose();

  const updates = codecFor('ParameterUpdate');
  const snapshots = codecFor('ModelSnapshot');
  const deadLetterCodec = codecFor('DeadLetter');
  const { snapshotEveryUpdates, snapshotIntervalMs, staleness, clipNorm, maxAbsGradient } = config.server;
  const stop$ = new Subject<void>();
  const snapshotReports = new Subject<SnapshotReport>();
  const outcomes = new Subject<UpdateOutcome>();
  const freshness = new Subject<number>();
  const metrics = createServerMetrics(config.namespace, backend);

  /** The shard's latest committed snapshot, read after the lane has fenced the previous owner. */
  const loadShard = async (lane: Lane): Promise<ShardState> => {
    await lane.started;
    const latest = (await latestSnapshots(kafka, config.namespace, [lane.partition])).get(lane.partition);
    if (latest) {
      log(`[ps ${serverId}] shard ${lane.partition}: resuming from snapshot version ${latest.version} at ${topics.updates}[${lane.partition}]@${lane.startOffset}`);
      return ShardState.fromSnapshot(latest, config.model);
    }
    log(`[ps ${serverId}] shard ${lane.partition}: starting from the initial weights`);
    return ShardState.initial(config.namespace, lane.partition, config.model, initialWeights.filter((w) => w.shard === lane.partition));
  };

  /**
   * Takes one record of the shard's updates partition into its state. No record can stop the shard: one it
   * refuses is counted by reason and comes back as the dead letter for `<ns>.ps.dlq`.
   */
  const takeRecord = (state: ShardState, record: KafkaRecord): Message | undefined => {
    const shard = state.shard;
    const decoded = updates.decode(record.value, record);
    const update = decoded.ok ? decoded.value : undefined;
    if (update) metrics.staleness.observe({ shard }, state.stalenessOf(update));
    const result = update ? state.take(update, staleness, clipNorm, maxAbsGradient) : state.refuse('DECODE', decoded.ok ? '' : decoded.error.message);
    metrics.updates.inc({ shard, outcome: result.outcome });
    outcomes.next(result.outcome);
    if (result.outcome === 'refused') {
      metrics.refused.inc({ shard, reason: result.reason });
      metrics.samples.inc({ shard, outcome: 'refused' }, result.sampleCount);
      const error = new RefusedUpdateError(result.reason, record, result.detail);
      log(`[ps ${serverId}] shard ${shard}: ${error.message}`);
      return deadLetterMessage({ record, error }, deadLetterCodec, Date.now());
    }
    if (result.outcome !== 'counted') metrics.samples.inc({ shard, outcome: result.outcome }, update!.sampleCount);
    metrics.deadLetters.inc({ shard }, update!.deadLettered);
    return undefined;
  };

  const lanePipeline = (lane: Lane): Observable<CheckpointReport> => {
    const shard = lane.partition;
    const loaded = loadShard(lane);
    // Snapshots published and not yet committed: the last update offset each covers, and its updates' append times.
    const awaitingCommit: Array<{ lastOffset: number; appendTimes: number[] }> = [];
    const snapshotOutputs = new Observable<Outputs>((subscriber) => {
      let state: ShardState | undefined;
      let covers: OffsetSpan[] = [];
      let refusals: Message[] = [];
      const publish = () => {
        if (!state || covers.length === 0) return;
        const appendTimes = state.takeAppendTimes();
        const lastOffset = covers[covers.length - 1]!.last;
        awaitingCommit.push({ lastOffset, appendTimes });
        const snapshot = state.snapshot(Date.now(), config.model.shards, appendTimes, lastOffset + 1);
        snapshotReports.next({ shard, version: snapshot.version, samplesApplied: snapshot.samplesApplied, lossSum: snapshot.lossSum, samplesDroppedStale: snapshot.samplesDroppedStale, deadLettered: snapshot.deadLettered, samplesRefused: snapshot.samplesRefused, updatesRefused: snapshot.updatesRefused, freshnessMs: snapshot.freshnessMs });
        // The refused records' dead letters commit with the snapshot that counts them.
        subscriber.next({
          messages: [{ topic: topics.model, messages: [shardMessage(shard, snapshots.encode(snapshot))] }, ...(refusals.length > 0 ? [{ topic: topics.serverDeadLetters, messages: refusals }] : [])],
          covers,
        });
        covers = [];
        refusals = [];
      };
      // A shard that cannot load fails its lane now, not as an unhandled rejection when no update comes.
      loaded.catch((error: unknown) => subscriber.error(error));
      const timer = setInterval(publish, snapshotIntervalMs);
      const subscription = lane.records
        .pipe(concatMap((record) => from(loaded).pipe(map((ready) => ((state = ready), record)))))
        .subscribe({
          next: (record) => {
            const refused = takeRecord(state!, record);
            if (refused) refusals.push(refused);
            covers.push(spanOf(record));
            if (covers.length >= snapshotEveryUpdates) publish();
          },
          error: (error: unknown) => subscriber.error(error),
          complete: () => {
            publish();
            subscriber.complete();
          },
        });
      return () => {
        clearInterval(timer);
        subscription.unsubscribe();
      };
    });
    return snapshotOutputs.pipe(
      checkpoint({ lane, intervalMs: snapshotIntervalMs, maxPendingOutputs: 1 }),
      tap((report) => {
        const now = Date.now();
        while (awaitingCommit.length > 0 && awaitingCommit[0]!.lastOffset < report.offset) {
          for (const appended of awaitingCommit.shift()!.appendTimes) {
            metrics.freshness.observe({ shard }, now - appended);
            freshness.next(now - appended);
          }
        }
      }),
    );
  };

  const done = lastValueFrom(
    fromKafka({
      kafka,
      topics: [topics.updates],
      groupId: topics.serverGroup,
      exactlyOnce: { transactionalIdPrefix: `${config.namespace}.ps` },
      until: stop$,
      consumer: groupTimings(config.sessionTimeoutMs),
    }).pipe(mergeMap(lanePipeline), filter(() => false)),
    { defaultValue: undefined },
  )
    .then(() => undefined)
    .finally(() => {
      snapshotReports.complete();
      outcomes.complete();
      freshness.complete();
    });

  return {
    serverId,
    snapshots: snapshotReports.asObservable(),
    outcomes: outcomes.asObservable(),
    freshness: freshness.asObservable(),
    metrics,
    stop: () => stop$.next(),
    done,
  };
}
