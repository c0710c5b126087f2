import { AssignerProtocol, type Admin, type Kafka } from 'kafkajs';
import { lastValueFrom, mergeMap, ReplaySubject, tap } from 'rxjs';
import { fromKafka } from '../../operators/fromKafka.js';
import type { Lane } from '../../operators/lane.js';
import { withRetry } from '../../operators/retry.js';
import { codecFor } from '../../schemas/codec.js';
import { ConfigError } from '../../schemas/errors.js';
import { formatCount as count } from '../common/console.js';
import { NamespaceError, SnapshotDecodeError } from '../common/errors.js';
import type { ModelSnapshot } from '../../schemas/types.js';
import type { ExperimentConfig } from '../common/config.js';
import { topicsOf } from '../common/topics.js';
import { isLaterSnapshot } from '../common/modelStore.js';
import { addStalenessCounts, summarizeStaleness, type StalenessSummary } from '../common/staleness.js';
import { closedWindows, type WindowScores } from '../../operators/prequential.js';
import { lossOf, parseModelSpec } from '../common/model.js';

/** One input partition, as the workers' group sees it. */
export interface PartitionStatus {
  readonly partition: number;
  /** The end of the partition (the next offset to be written). */
  readonly end: number;
  /** The workers' committed offset, or -1 if none yet. */
  readonly committed: number;
  /** Records not yet trained on and committed. */
  readonly lag: number;
  /** Records/s committed by the workers, between this reading and the previous one (undefined on the first). */
  readonly rate: number | undefined;
  /** The worker that owns the partition (its workerId), or undefined while unassigned. */
  readonly owner: string | undefined;
}

/** One parameter-server shard, from its newest committed snapshot. */
export interface ShardStatus {
  readonly shard: number;
  readonly version: number;
  readonly samplesApplied: number;
  readonly updatesDroppedStale: number;
  readonly samplesDroppedStale: number;
  readonly deadLettered: number;
  /** Update records the server refused (each in `<ns>.ps.dlq`), and the samples they said they covered: an error to look into. */
  readonly updatesRefused: number;
  readonly samplesRefused: number;
  readonly refusedByReason: Readonly<Record<string, number>>;
  /** The largest append-to-snapshot time over the updates this snapshot was the first to include. */
  readonly freshnessMs: number;
  readonly lossSum: number;
  /** The staleness of the shard's updates with samples over its life, in power-of-two buckets (see `staleness.ts`). */
  readonly stalenessCounts: readonly number[];
  readonly staleness: StalenessSummary;
}

/** What `streamgrad status` shows: read from Kafka alone (admin and `<ns>.model`), so it works from any machine. */
export interface StatusReport {
  readonly namespace: string;
  readonly inputTopic: string;
  readonly at: number;
  readonly partitions: readonly PartitionStatus[];
  readonly shards: readonly ShardStatus[];
  /**
   * Mean loss per sample (each computed before the sample was trained on): since the previous reading when samples
   * moved; when none did, the previous reading's; over the whole run at the first reading.
   */
  readonly loss: number | undefined;
  readonly lag: number;
  /** Input records dead-lettered, as the snapshots count them (exactly once; `<ns>.dlq` also holds transaction markers and aborted writes). */
  readonly deadLetters: number;
  /** Samples applied per second (shard 0) since the previous reading. */
  readonly samplesPerSecond: number | undefined;
  /** Prequential scores per event-time window, from shard 0 (undefined before it has any). */
  readonly prequential: PrequentialStatus | undefined;
  /** The staleness of every update with samples the job's shards took in, over their life. */
  readonly staleness: StalenessSummary;
  /** Records of `<ns>.model` that are not snapshots (the newest snapshot shown may be older than the shard's). */
  readonly undecodableSnapshots: readonly string[];
}

/** The prequential scores of the closed event-time windows (each sample scored before it was trained on). */
export interface PrequentialStatus {
  readonly windowMs: number;
  /** Accuracy and log-loss (classifiers), or loss, MAE and RMSE. */
  readonly classifier: boolean;
  /** The closed windows shard 0 keeps, oldest first. */
  readonly closed: readonly WindowScores[];
  readonly first: WindowScores | undefined;
  /** The closed window with the lowest loss. */
  readonly best: WindowScores | undefined;
  readonly last: WindowScores | undefined;
}

const snapshotCodec = codecFor('ModelSnapshot');

/** Shard 0's prequential windows, closed ones only (those that end at or before its event-time watermark). */
export function prequentialOf(snapshot: ModelSnapshot | undefined): PrequentialStatus | undefined {
  if (!snapshot || snapshot.prequentialWindowMs <= 0 || snapshot.prequential.length === 0) return undefined;
  const closed = closedWindows(snapshot);
  const best = closed.reduce<WindowScores | undefined>((lowest, w) => (!lowest || w.loss < lowest.loss ? w : lowest), undefined);
  return { windowMs: snapshot.prequentialWindowMs, classifier: isClassifier(snapshot.modelConfig), closed, first: closed[0], best, last: closed.at(-1) };
}

function isClassifier(modelConfig: string): boolean {
  try {
    return lossOf(parseModelSpec(JSON.parse(modelConfig))) !== 'mse';
  } catch {
    return false;
  }
}

/** One window's scores as people read them: `12:00:10 loss 0.0123 MAE 0.0812 RMSE 0.110 (2,304)`, or accuracy and log-loss. */
export function formatWindow(w: WindowScores, classifier: boolean): string {
  const time = new Date(w.start).toISOString().slice(11, 19);
  const scores = classifier ? `accuracy ${w.accuracy.toFixed(3)} log-loss ${w.loss.toFixed(4)}` : `loss ${w.loss.toFixed(4)} MAE ${w.mae.toPrecision(3)} RMSE ${w.rmse.toPrecision(3)}`;
  return `${time} ${scores} (${count(w.samples)})`;
}

/**
 * Reads the state of an experiment from Kafka: the workers' group on the input
 * topic (committed offsets, ends, owners), the newest snapshot of each shard
 * (tailed from `<ns>.model`) and the dead-letter topic. `read()` compares with
 * the previous reading for rates and the recent loss.
 */
export class StatusReader {
  private readonly admin: Admin;
  private readonly latest = new Map<number, ModelSnapshot>();
  /** What the tail of `<ns>.model` could not decode, one message each (the first 10). */
  private readonly undecodable: string[] = [];
  private readonly tailLanes = new Map<number, Lane>();
  // Replays: a tail whose source subscribes after stop() still stops.
  private readonly stop$ = new ReplaySubject<void>(1);
  private tail: Promise<void> | undefined;
  private previous: StatusReport | undefined;

  constructor(
    private readonly kafka: Kafka,
    private readonly config: Pick<ExperimentConfig, 'namespace' | 'inputTopic'>,
  ) {
    this.admin = kafka.admin();
  }

  /** Connects, checks that the namespace and the input topic exist, and starts tailing `<ns>.model`. */
  async start(): Promise<void> {
    await this.admin.connect();
    const topics = topicsOf(this.config.namespace);
    const existing = new Set(await this.admin.listTopics());
    const missing = !existing.has(topics.updates) || !existing.has(topics.model)
      ? new NamespaceError(this.config.namespace, `no topics ${topics.updates} and ${topics.model} on the broker; start it with \`streamgrad run\` first`)
      : !existing.has(this.config.inputTopic) ? new ConfigError('inputTopic', `topic '${this.config.inputTopic}' does not exist on the broker`) : undefined;
    if (missing) {
      await this.admin.disconnect();
      throw missing;
    }
    this.tail = lastValueFrom(
      fromKafka({ kafka: this.kafka, topics: [topics.model], until: this.stop$ }).pipe(
        mergeMap((lane) => {
          this.tailLanes.set(lane.partition, lane);
          return lane.records.pipe(
            tap((record) => {
              lane.ack(record.offset);
              const decoded = snapshotCodec.decode(record.value, record);
              if (!decoded.ok && this.undecodable.length < 10) this.undecodable.push(new SnapshotDecodeError(record, decoded.error.message).message);
              if (!decoded.ok || decoded.value.namespace !== this.config.namespace) return;
              const known = this.latest.get(decoded.value.shard);
              if (!known || isLaterSnapshot(decoded.value, known)) this.latest.set(decoded.value.shard, decoded.value);
            }),
          );
        }),
      ),
      { defaultValue: undefined },
    ).then(() => undefined);
  }

  /** The newest snapshot seen of each shard. */
  snapshots(): ReadonlyMap<number, ModelSnapshot> {
    return this.latest;
  }

  /** Waits until the tail has read `<ns>.model` up to its end as of now (for a one-off reading). */
  async catchUp(timeoutMs = 30_000): Promise<void> {
    const model = topicsOf(this.config.namespace).model;
    const ends = await this.admin.fetchTopicOffsets(model);
    const deadline = Date.now() + timeoutMs;
    const caughtUp = () => ends.every(({ partition, high }) => (this.tailLanes.get(partition)?.position ?? -1) >= Number(high));
    while (!caughtUp()) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms reading ${model}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /**
   * Waits until the parameter servers have committed every update in `<ns>.updates`
   * (each partition ends in a transaction marker, hence `end − 1`).
   */
  async serverCaughtUp(timeoutMs: number): Promise<void> {
    const topics = topicsOf(this.config.namespace);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const [ends, committed] = await withRetry(() => Promise.all([this.admin.fetchTopicOffsets(topics.updates), this.admin.fetchOffsets({ groupId: topics.serverGroup, topics: [topics.updates] })]));
      const at = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
      const behind = ends.filter(({ partition, high }) => Number(high) > 0 && (at.get(partition) ?? -1) < Number(high) - 1);
      if (behind.length === 0) return;
      if (Date.now() > deadline) throw new Error(`the parameter server has not committed ${topics.updates} partitions ${behind.map((p) => p.partition).join(', ')} after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  async read(): Promise<StatusReport> {
    const { namespace, inputTopic } = this.config;
    const topics = topicsOf(namespace);
    // A coordinator that is still loading or moving answers with a retriable error.
    const [ends, committedTopics, groups] = await withRetry(() =>
      Promise.all([
        this.admin.fetchTopicOffsets(inputTopic),
        this.admin.fetchOffsets({ groupId: topics.workerGroup, topics: [inputTopic] }),
        this.admin.describeGroups([topics.workerGroup]),
      ]),
    );
    const owners = new Map<number, string>();
    for (const member of groups.groups[0]?.members ?? []) {
      if (member.memberAssignment.length === 0) continue;
      const assignment = AssignerProtocol.MemberAssignment.decode(member.memberAssignment);
      for (const partition of assignment?.assignment[inputTopic] ?? []) owners.set(partition, member.clientId.replace(/^streamgrad-worker-/, ''));
    }
    const committedOf = new Map((committedTopics[0]?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
    const now = Date.now();
    const previous = this.previous;
    const partitions: PartitionStatus[] = ends
      .map(({ partition, high, low }) => {
        const committed = committedOf.get(partition) ?? -1;
        const end = Number(high);
        const before = previous?.partitions.find((p) => p.partition === partition);
        const rate = before && committed >= 0 ? ((committed - Math.max(before.committed, 0)) * 1000) / Math.max(1, now - previous!.at) : undefined;
        return { partition, end, committed, lag: Math.max(0, end - (committed >= 0 ? committed : Number(low))), rate, owner: owners.get(partition) };
      })
      .sort((a, b) => a.partition - b.partition);
    const shards: ShardStatus[] = [...this.latest.values()]
      .sort((a, b) => a.shard - b.shard)
      .map((s) => ({
        shard: s.shard,
        version: s.version,
        samplesApplied: s.samplesApplied,
        updatesDroppedStale: s.updatesDroppedStale,
        samplesDroppedStale: s.samplesDroppedStale,
        deadLettered: s.deadLettered,
        updatesRefused: s.updatesRefused,
        samplesRefused: s.samplesRefused,
        refusedByReason: s.refusedByReason,
        freshnessMs: s.freshnessMs,
        lossSum: s.lossSum,
        stalenessCounts: s.stalenessCounts,
        staleness: summarizeStaleness(s.stalenessCounts, s.stalenessMax),
      }));
    const first = shards[0];
    const before = previous?.shards[0];
    const moved = first && before ? first.samplesApplied - before.samplesApplied : 0;
    // Between readings where no sample moved (training idle or done), the last recent loss stands.
    const wholeRun = first && first.samplesApplied > 0 ? first.lossSum / first.samplesApplied : undefined;
    const loss = first && before && moved > 0 ? (first.lossSum - before.lossSum) / moved : (previous?.loss ?? wholeRun);
    const report: StatusReport = {
      namespace,
      inputTopic,
      at: now,
      partitions,
      shards,
      loss,
      lag: partitions.reduce((sum, p) => sum + p.lag, 0),
      deadLetters: first?.deadLettered ?? 0,
      prequential: prequentialOf(this.latest.get(0)),
      staleness: summarizeStaleness(addStalenessCounts(shards.map((s) => s.stalenessCounts)), Math.max(0, ...shards.map((s) => s.staleness.max))),
      undecodableSnapshots: [...this.undecodable],
      samplesPerSecond: first && before ? (moved * 1000) / Math.max(1, now - previous!.at) : undefined,
    };
    this.previous = report;
    return report;
  }

  async stop(): Promise<void> {
    this.stop$.next();
    await this.tail;
    await this.admin.disconnect();
  }
}


/** One line for a live display: samples/s, loss, lag, versions, freshness. */
export function progressLine(report: StatusReport): string {
  const versions = report.shards.map((s) => s.version).join('/') || '-';
  const freshness = report.shards.length > 0 ? `${Math.max(...report.shards.map((s) => s.freshnessMs))} ms` : '-';
  return [
    `${report.samplesPerSecond === undefined ? '-' : count(report.samplesPerSecond)} samples/s`,
    `loss ${report.loss === undefined ? '-' : report.loss.toFixed(4)}`,
    `applied ${count(report.shards[0]?.samplesApplied ?? 0)}`,
    `lag ${count(report.lag)}`,
    `version ${versions}`,
    `freshness ${freshness}`,
    `staleness p99 ${count(report.staleness.p99)}`,
    ...windowLine(report.prequential),
    `dead letters ${count(report.deadLetters)}`,
    ...refusedWarning(report),
    ...report.undecodableSnapshots.map((message) => `ERROR: ${message}`),
  ].join(' | ');
}

/** The last closed window's headline score, for the progress line. */
function windowLine(prequential: PrequentialStatus | undefined): string[] {
  const last = prequential?.last;
  if (!last) return [];
  return [prequential.classifier ? `window accuracy ${last.accuracy.toFixed(3)}` : `window loss ${last.loss.toFixed(4)}`];
}

/** `REFUSED …` when any shard refused updates: samples the model did not learn from, with the reasons. */
function refusedWarning(report: StatusReport): string[] {
  const refused = report.shards.filter((s) => s.updatesRefused > 0);
  if (refused.length === 0) return [];
  const reasons = new Map<string, number>();
  for (const s of refused) for (const [reason, n] of Object.entries(s.refusedByReason)) reasons.set(reason, (reasons.get(reason) ?? 0) + n);
  const samples = Math.max(...refused.map((s) => s.samplesRefused));
  return [`ERROR: ${count(refused.reduce((sum, s) => sum + s.updatesRefused, 0))} updates refused (${[...reasons].map(([r, n]) => `${r} ${count(n)}`).join(', ')}; ${count(samples)} samples not learnt; see <namespace>.ps.dlq)`];
}

/** The full `streamgrad status` display: per partition, per shard, and the totals. */
export function formatStatus(report: StatusReport): string {
  const table = (header: string[], rows: string[][]) => {
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
    return [line(header), ...rows.map(line)].join('\n');
  };
  const partitions = table(
    ['partition', 'end', 'committed', 'lag', 'rate/s', 'owner'],
    report.partitions.map((p) => [String(p.partition), count(p.end), p.committed < 0 ? '-' : count(p.committed), count(p.lag), p.rate === undefined ? '-' : count(p.rate), p.owner ?? '(unassigned)']),
  );
  const shards = table(
    ['shard', 'version', 'samplesApplied', 'droppedStale (updates/samples)', 'deadLettered', 'refused (updates/samples)', 'freshness ms', 'staleness p50/p99/max'],
    report.shards.map((s) => [
      String(s.shard),
      count(s.version),
      count(s.samplesApplied),
      `${count(s.updatesDroppedStale)}/${count(s.samplesDroppedStale)}`,
      count(s.deadLettered),
      `${count(s.updatesRefused)}/${count(s.samplesRefused)}`,
      count(s.freshnessMs),
      `${count(s.staleness.p50)}/${count(s.staleness.p99)}/${count(s.staleness.max)}`,
    ]),
  );
  return [
    `namespace ${report.namespace}, input ${report.inputTopic}, at ${new Date(report.at).toISOString()}`,
    '',
    partitions,
    '',
    report.shards.length > 0 ? shards : '(no snapshot yet)',
    '',
    `loss ${report.loss === undefined ? '-' : report.loss.toFixed(4)} | lag ${count(report.lag)} | dead letters ${count(report.deadLetters)}${report.samplesPerSecond === undefined ? '' : ` | ${count(report.samplesPerSecond)} samples/s`}`,
    ...prequentialLines(report.prequential),
    `staleness of ${count(report.staleness.updates)} updates (updates that changed a shard since the one they were computed on, bucket tops): p50 ≤ ${count(report.staleness.p50)}, p99 ≤ ${count(report.staleness.p99)}, max ${count(report.staleness.max)}`,
    ...refusedWarning(report),
    ...report.undecodableSnapshots.map((message) => `ERROR: ${message}`),
  ].join('\n');
}

/** The prequential block of `status`: the first, best and last closed windows. */
function prequentialLines(prequential: PrequentialStatus | undefined): string[] {
  if (!prequential?.first) return [];
  const { classifier, first, best, last, closed, windowMs } = prequential;
  return [
    `prequential scores (each sample scored before it was trained on), ${count(windowMs / 1000)} s event-time windows, ${count(closed.length)} closed:`,
    `  first ${formatWindow(first, classifier)}`,
    `  best  ${formatWindow(best!, classifier)}`,
    `  last  ${formatWindow(last!, classifier)}`,
  ];
}
