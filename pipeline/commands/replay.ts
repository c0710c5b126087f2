import type { Kafka } from 'kafkajs';
import type { EndPosition, StartPosition } from '../../operators/fromKafka.js';
import { ConfigError } from '../../schemas/errors.js';
import type { ExperimentConfig } from '../common/config.js';
import type { ConsoleDisplay } from '../common/console.js';
import { assertReachable, createKafka } from '../common/kafkaClient.js';
import { latestSnapshots, modelHash } from '../common/modelStore.js';
import { startParameterServer, type SnapshotReport } from '../server/parameterServer.js';
import { topicsOf } from '../common/topics.js';
import { startWorker } from '../worker/worker.js';

/** How long a replay waits, after its worker ended, for the server's snapshots to account for every record. */
const accountingTimeoutMs = 120_000;

/** The range of a replay: by time (ms since the epoch) or by offsets per partition; each end defaults to the topic's. */
export interface ReplayRange {
  readonly from?: { readonly timestamp: number } | { readonly offsets: Readonly<Record<number, number>> };
  readonly to?: { readonly timestamp: number } | { readonly offsets: Readonly<Record<number, number>> };
}

/** Options of {@link runReplay}. */
export interface ReplayOptions {
  /** The replay's own experiment: its model, optimizer and input topic. */
  readonly config: ExperimentConfig;
  /** The new namespace; default `<config.namespace>.replay-<time>`. It must not exist yet. */
  readonly namespace?: string;
  readonly range: ReplayRange;
  /** One update at a time, each waiting for the snapshot that reflects it: two replays of a range give the same model. */
  readonly sync: boolean;
  /**
   * Read the partitions all at once, interleaved as live training reads them, instead of one after another. With
   * `sync`, a sequential learner on the interleaved order (which depends on timing: not bit-reproducible).
   */
  readonly interleave?: boolean;
  readonly display: ConsoleDisplay;
}

/** What a replay did. */
export interface ReplaySummary {
  readonly namespace: string;
  readonly samples: number;
  readonly deadLettered: number;
  /** The mean loss (each sample's before its step) over the last updates that hold at least a tenth of the samples. */
  readonly finalLoss: number | undefined;
  /** The final snapshot version of each shard. */
  readonly versions: readonly number[];
  readonly hash: string;
  readonly seconds: number;
}

/** Parses a time given as ms since the epoch or an ISO 8601 date; `what` names the option in the error. */
export function parseTime(value: string, what: string): number {
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms)) throw new ConfigError(what, `'${value}' is neither ms since the epoch nor an ISO 8601 time (e.g. 2026-11-28T10:00:00Z)`);
  return ms;
}

/** Parses `partition:offset[,partition:offset…]`; `what` names the option in the error. */
export function parseOffsets(value: string, what: string): Record<number, number> {
  const offsets: Record<number, number> = {};
  for (const part of value.split(',')) {
    const match = /^\s*(\d+):(\d+)\s*$/.exec(part);
    if (!match) throw new ConfigError(what, `'${part}' is not partition:offset (e.g. 0:1000,1:1000)`);
    offsets[Number(match[1])] = Number(match[2]);
  }
  return offsets;
}

/** The start and end positions of the range on `topic`, with the topic's own ends where the range leaves them open. */
async function positionsOf(kafka: Kafka, topic: string, range: ReplayRange): Promise<{ partitions: number[]; start: StartPosition; end: EndPosition }> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (!(await admin.listTopics()).includes(topic)) throw new ConfigError('inputTopic', `topic '${topic}' does not exist on the broker`);
    const offsets = await admin.fetchTopicOffsets(topic);
    const partitions = offsets.map((p) => p.partition).sort((a, b) => a - b);
    const keyed = (given: Readonly<Record<number, number>>, fallback: (p: (typeof offsets)[number]) => number, what: string) => {
      for (const partition of Object.keys(given).map(Number)) {
        if (!partitions.includes(partition)) throw new ConfigError(what, `${topic} has no partition ${partition} (it has ${partitions.length})`);
      }
      return { offsets: Object.fromEntries(offsets.map((p) => [`${topic}:${p.partition}`, given[p.partition] ?? fallback(p)])) };
    };
    const from = range.from;
    const start: StartPosition = from === undefined ? 'earliest' : 'timestamp' in from ? from : keyed(from.offsets, (p) => Number(p.low), '--from-offsets');
    const to = range.to;
    const end: EndPosition = to === undefined ? true : 'timestamp' in to ? to : keyed(to.offsets, (p) => Number(p.high), '--to-offsets');
    return { partitions, start, end };
  } finally {
    await admin.disconnect();
  }
}

/** Shard 0's cumulative samples and loss sum at one of its snapshots. */
export interface LossPoint {
  readonly samples: number;
  readonly lossSum: number;
}

/**
 * The mean loss (each sample's before its step) over the last updates that hold at least a tenth of the samples, from
 * shard 0's snapshots in order (cumulative samples and loss sums): from the newest snapshot at or before 90% of the
 * samples, so whole updates, and one large update never widens it to the whole run.
 */
export function finalLossOf(history: readonly LossPoint[]): number | undefined {
  const last = history.at(-1);
  if (!last || last.samples === 0) return undefined;
  const from = history.findLast((h) => h.samples <= last.samples * 0.9);
  return (last.lossSum - (from?.lossSum ?? 0)) / (last.samples - (from?.samples ?? 0));
}

/**
 * `streamgrad replay`: trains a new experiment namespace on a range of the
 * input topic's history, in this process (one parameter server and one
 * worker, the partitions read one after another), and ends by itself once the
 * server's snapshots account for every record of the range. Only the new
 * namespace's topics are written.
 */
export async function runReplay(options: ReplayOptions): Promise<ReplaySummary> {
  const { display } = options;
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  const namespace = options.namespace ?? `${options.config.namespace}.replay-${stamp}`;
  const config: ExperimentConfig = {
    ...options.config,
    namespace,
    sync: options.sync,
    workerId: `${namespace}-replay`,
    // In sync mode every update waits for its snapshot: make one per update.
    server: options.sync ? { ...options.config.server, snapshotEveryUpdates: 1 } : options.config.server,
  };
  await assertReachable(config);
  const kafka = createKafka(config, `streamgrad-replay-${process.pid}`);
  const admin = kafka.admin();
  await admin.connect();
  const taken = (await admin.listTopics()).filter((t) => Object.values(topicsOf(namespace)).includes(t));
  await admin.disconnect();
  if (taken.length > 0) throw new ConfigError('--namespace', `namespace '${namespace}' already exists (${taken.join(', ')}); a replay writes to a new namespace`);
  const range = await positionsOf(kafka, config.inputTopic, options.range);

  const startedAt = Date.now();
  const quiet = () => {};
  const server = await startParameterServer(config, { log: quiet });
  const reports = new Map<number, SnapshotReport>();
  const history: LossPoint[] = [];
  server.snapshots.subscribe((report) => {
    reports.set(report.shard, report);
    if (report.shard === 0) history.push({ samples: report.samplesApplied, lossSum: report.lossSum });
  });
  const worker = await startWorker(config, { log: quiet, range: { ...range, interleave: options.interleave ?? false } });
  const mode = [options.sync ? 'sync' : '', options.interleave ? 'interleaved' : ''].filter(Boolean).join(', ');
  display.log(`replaying ${config.inputTopic} partitions ${range.partitions.join(', ')} into namespace ${namespace}${mode ? ` (${mode})` : ''}`);
  const progress = setInterval(() => {
    const { samples, deadLettered } = worker.trained();
    const applied = reports.get(0)?.samplesApplied ?? 0;
    display.progress(`${Math.round((Date.now() - startedAt) / 1000)}s | trained ${samples.toLocaleString('en-US')} | applied ${applied.toLocaleString('en-US')} | dead letters ${deadLettered} | version ${[...reports.values()].map((r) => r.version).join('/') || '-'}`);
  }, 1_000);
  const interrupt = () => {
    display.log('SIGINT: stopping the replay; the new namespace keeps what was committed');
    worker.stop();
  };
  process.once('SIGINT', interrupt);
  try {
    await worker.done;
    const { samples, deadLettered } = worker.trained();
    const total = samples + deadLettered;
    // Every record of the range is in one committed update per shard; wait until the snapshots account for all of them.
    const deadline = Date.now() + accountingTimeoutMs;
    const accounted = () => Array.from({ length: config.model.shards }, (_, shard) => reports.get(shard)).every((r) => r !== undefined && r.samplesApplied + r.samplesDroppedStale + r.deadLettered >= total);
    while (total > 0 && !accounted()) {
      if (Date.now() > deadline) throw new Error(`the parameter server did not account for all ${total} records within ${accountingTimeoutMs / 1000} s`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    clearInterval(progress);
    process.off('SIGINT', interrupt);
    server.stop();
    await server.done;
    display.done();
  }
  const latest = await latestSnapshots(kafka, namespace);
  const { samples, deadLettered } = worker.trained();
  const finalLoss = finalLossOf(history);
  return {
    namespace,
    samples,
    deadLettered,
    finalLoss,
    versions: [...latest.values()].sort((a, b) => a.shard - b.shard).map((s) => s.version),
    hash: modelHash(latest.values()),
    seconds: (Date.now() - startedAt) / 1000,
  };
}
