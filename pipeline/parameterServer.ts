import { hostname } from 'node:os';
import { concatMap, filter, from, lastValueFrom, map, mergeMap, Observable, Subject, tap } from 'rxjs';
import { checkpoint, type CheckpointReport, type Outputs } from '../operators/checkpoint.js';
import { fromKafka } from '../operators/fromKafka.js';
import { spanOf, type Lane, type OffsetSpan } from '../operators/lane.js';
import { codecFor } from '../schemas/codec.js';
import type { ExperimentConfig } from './config.js';
import { createKafka } from './kafkaClient.js';
import { latestSnapshots } from './modelStore.js';
import { Replica } from './replica.js';
import { createServerMetrics, type ServerMetrics } from './metrics.js';
import { ShardState, type UpdateOutcome } from './shardState.js';
import { ensureNamespaceTopics } from './topics.js';
import { selectBackend } from './backend.js';

/** What a server reports per snapshot it publishes. */
export interface SnapshotReport {
  readonly shard: number;
  readonly version: number;
  readonly samplesApplied: number;
  /** The sum of the reported losses over samplesApplied. */
  readonly lossSum: number;
  readonly samplesDroppedStale: number;
  readonly deadLettered: number;
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
  const { snapshotEveryUpdates, snapshotIntervalMs, staleness, clipNorm } = config.server;
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

  const lanePipeline = (lane: Lane): Observable<CheckpointReport> => {
    const shard = lane.partition;
    const loaded = loadShard(lane);
    // Snapshots published and not yet committed: the last update offset each covers, and its updates' append times.
    const awaitingCommit: Array<{ lastOffset: number; appendTimes: number[] }> = [];
    const snapshotOutputs = new Observable<Outputs>((subscriber) => {
      let state: ShardState | undefined;
      let covers: OffsetSpan[] = [];
      const publish = () => {
        if (!state || covers.length === 0) return;
        const appendTimes = state.takeAppendTimes();
        awaitingCommit.push({ lastOffset: covers[covers.length - 1]!.last, appendTimes });
        const snapshot = state.snapshot(Date.now(), config.model.shards, appendTimes);
        snapshotReports.next({ shard, version: snapshot.version, samplesApplied: snapshot.samplesApplied, lossSum: snapshot.lossSum, samplesDroppedStale: snapshot.samplesDroppedStale, deadLettered: snapshot.deadLettered, freshnessMs: snapshot.freshnessMs });
        subscriber.next({ messages: [{ topic: topics.model, messages: [{ key: String(shard), partition: shard, value: snapshots.encode(snapshot) }] }], covers });
        covers = [];
      };
      const timer = setInterval(publish, snapshotIntervalMs);
      const subscription = lane.records
        .pipe(concatMap((record) => from(loaded).pipe(map((ready) => ((state = ready), record)))))
        .subscribe({
          next: (record) => {
            const update = updates.decode(record.value, record);
            // An update no server can read is accounted for (its offset is covered) and reported, never retried forever.
            if (update.ok) {
              metrics.staleness.observe({ shard }, state!.stalenessOf(update.value));
              const outcome = state!.take(update.value, staleness, clipNorm);
              if (outcome === 'duplicate') {
                const ranges = update.value.offsets.map((r) => `${r.topic}[${r.partition}]@${r.firstOffset}-${r.lastOffset}`).join(', ');
                log(`[ps ${serverId}] shard ${shard}: refused a repeated update from ${update.value.workerId} for ${ranges} at ${topics.updates}[${shard}]@${record.offset}`);
              }
              metrics.updates.inc({ shard, outcome });
              if (outcome === 'applied' || outcome === 'dropped') metrics.samples.inc({ shard, outcome }, update.value.sampleCount);
              if (outcome !== 'duplicate') metrics.deadLetters.inc({ shard }, update.value.deadLettered);
              outcomes.next(outcome);
            }
            else log(`[ps ${serverId}] skipping ${update.error.message}`);
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
      consumer: { sessionTimeout: config.sessionTimeoutMs, heartbeatInterval: Math.max(500, Math.floor(config.sessionTimeoutMs / 10)) },
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
