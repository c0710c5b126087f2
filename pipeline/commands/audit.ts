import type { Kafka } from 'kafkajs';
import { withRetry } from '../../operators/retry.js';
import { codecFor } from '../../schemas/codec.js';
import type { ModelSnapshot } from '../../schemas/types.js';
import { formatCount as count } from '../common/console.js';
import { isLaterSnapshot, readSnapshots } from '../common/modelStore.js';
import { readTopic } from '../common/readTopic.js';
import { topicsOf, type NamespaceTopics } from '../common/topics.js';

/** An inclusive run of offsets. */
export interface OffsetRun {
  readonly first: number;
  readonly last: number;
}

/** What the audit found for one input partition, as seen by one shard (every shard gets every update). */
export interface PartitionAudit {
  readonly shard: number;
  readonly partition: number;
  /** The audited offsets: from the partition's first record to the workers' committed offset (exclusive). */
  readonly start: number;
  readonly frontier: number;
  /** Input records in that range. */
  readonly records: number;
  /** Records in exactly one update (trained, or dropped as stale), one dead letter, or one update the server refused. */
  readonly trained: number;
  readonly deadLettered: number;
  readonly refused: number;
  /** Records in no update and no dead letter: lost. */
  readonly gaps: readonly OffsetRun[];
  /** Records in more than one update or dead letter: trained twice, or refused as repeats. */
  readonly overlaps: readonly OffsetRun[];
  /** Offsets at or past the committed offset that a committed update or dead letter covers: the next owner would do them again. */
  readonly beyondFrontier: readonly OffsetRun[];
}

/** What the audit found for one parameter-server shard, from its committed snapshots and updates. */
export interface ShardAudit {
  readonly shard: number;
  readonly snapshots: number;
  /** The newest committed snapshot's version and counters. */
  readonly version: number;
  readonly samplesApplied: number;
  readonly samplesDroppedStale: number;
  readonly deadLettered: number;
  readonly updatesRefused: number;
  readonly samplesRefused: number;
  /** Update records below the newest snapshot's `updatesOffset`: what it must account for. */
  readonly updatesTaken: number;
  /** Committed update records past it: not yet taken in by the server. */
  readonly updatesPending: number;
  readonly problems: readonly string[];
}

/** The result of {@link auditNamespace}; `ok` only when every partition and shard holds. */
export interface AuditReport {
  readonly namespace: string;
  readonly inputTopic: string;
  readonly ok: boolean;
  readonly partitions: readonly PartitionAudit[];
  readonly shards: readonly ShardAudit[];
  /** Every violation, one line each, naming the shard, partition and offsets. */
  readonly problems: readonly string[];
  /** What the audit assumed, e.g. the range of a replay that commits no offsets. */
  readonly notes: readonly string[];
}

/** Options of {@link auditNamespace}. */
export interface AuditOptions {
  readonly kafka: Kafka;
  readonly namespace: string;
  readonly inputTopic: string;
  /** Progress, one line per phase. */
  readonly log?: (line: string) => void;
}

/** One committed update record, without its tensors. */
interface UpdateEntry {
  readonly offset: number;
  readonly sampleCount: number;
  readonly deadLettered: number;
  readonly workerId: string;
  readonly createdAt: number;
  readonly ranges: ReadonlyArray<{ readonly topic: string; readonly partition: number; readonly firstOffset: number; readonly lastOffset: number }>;
}

const updateCodec = codecFor('ParameterUpdate');
const deadLetterCodec = codecFor('DeadLetter');
const describeRuns = (runs: readonly OffsetRun[]) =>
  runs
    .slice(0, 20)
    .map((r) => (r.first === r.last ? `${r.first}` : `${r.first}-${r.last}`))
    .join(', ') + (runs.length > 20 ? `, … (${runs.length} runs)` : '');
const sizeOf = (runs: readonly OffsetRun[]) => runs.reduce((n, r) => n + r.last - r.first + 1, 0);

/** Appends `value` to the list under `key`. */
function pushTo<K, V>(lists: Map<K, V[]>, key: K, value: V): void {
  const list = lists.get(key);
  if (list) list.push(value);
  else lists.set(key, [value]);
}

/** Appends `offset` to sorted runs, extending the last run when it follows on. */
function addOffset(runs: OffsetRun[], offset: number): void {
  const last = runs[runs.length - 1];
  if (last && last.last + 1 === offset) runs[runs.length - 1] = { first: last.first, last: offset };
  else runs.push({ first: offset, last: offset });
}

/**
 * Intersects sorted, disjoint `runs` with the segments where `intervals` cover an offset `times(n)` times:
 * the runs of records covered by no interval, by more than one, and so on.
 */
export function coverage(records: readonly OffsetRun[], intervals: readonly OffsetRun[], times: (n: number) => boolean): OffsetRun[] {
  const events = new Map<number, number>();
  for (const { first, last } of intervals) {
    events.set(first, (events.get(first) ?? 0) + 1);
    events.set(last + 1, (events.get(last + 1) ?? 0) - 1);
  }
  const points = [...events.keys()].sort((a, b) => a - b);
  // Segments [from, to) of constant multiplicity, covering everything.
  const segments: Array<{ from: number; to: number; n: number }> = [];
  let n = 0;
  let from = Number.NEGATIVE_INFINITY;
  for (const point of points) {
    segments.push({ from, to: point, n });
    n += events.get(point)!;
    from = point;
  }
  segments.push({ from, to: Number.POSITIVE_INFINITY, n });
  const found: OffsetRun[] = [];
  let s = 0;
  for (const run of records) {
    while (s < segments.length && segments[s]!.to <= run.first) s++;
    for (let k = s; k < segments.length && segments[k]!.from <= run.last; k++) {
      const segment = segments[k]!;
      if (!times(segment.n)) continue;
      const first = Math.max(run.first, segment.from);
      const last = Math.min(run.last, segment.to - 1);
      const previous = found[found.length - 1];
      if (previous && previous.last + 1 === first) found[found.length - 1] = { first: previous.first, last };
      else found.push({ first, last });
    }
  }
  return found;
}

/**
 * Proves, from the committed topics alone, that nothing was lost or trained
 * twice: per input partition and shard, every input record from the first to
 * the workers' committed offset is in exactly one committed update or dead
 * letter (gaps and overlaps are listed as offset runs); per shard, the
 * snapshot versions increase (a repeated version only further on in the
 * updates partition, past aborted records), the newest snapshot's version is the
 * number of update records it has taken in, and its counters add up to them
 * (`samplesApplied + samplesDroppedStale` = the samples of the updates it did
 * not refuse; `deadLettered`, `updatesRefused` likewise).
 */
export async function auditNamespace(options: AuditOptions): Promise<AuditReport> {
  const { kafka, namespace, inputTopic } = options;
  const log = options.log ?? (() => {});
  const topics = topicsOf(namespace);
  const { existing, ends, committed } = await readInputState(kafka, inputTopic, topics.workerGroup);
  const accounting = await readAccounting(kafka, topics, inputTopic, existing, log);

  log(`reading ${topics.model}`);
  const snapshots = await readSnapshots(kafka, namespace);
  const { updatesByShard, refusedAt, undecodable } = accounting;
  const shardIds = [...new Set([...updatesByShard.keys(), ...snapshots.map((s) => s.shard)])].sort((a, b) => a - b);

  const problems: string[] = [];
  const notes: string[] = [];
  const shards = shardIds.map((shard) => auditShard(shard, snapshots.filter((s) => s.shard === shard), updatesByShard.get(shard) ?? [], refusedAt.get(shard) ?? new Map(), undecodable.get(shard) ?? [], problems));
  const partitions: PartitionAudit[] = [];
  for (const { partition, low, high } of [...ends].sort((a, b) => a.partition - b.partition)) {
    const range = auditedRange(partition, Number(low), Number(high), committed, accounting, shardIds, inputTopic, topics.workerGroup, { problems, notes });
    if (!range) continue;
    const records: OffsetRun[] = [];
    if (range.frontier > range.start) {
      log(`reading ${inputTopic}[${partition}] ${count(range.start)}–${count(range.frontier)}`);
      const key = `${inputTopic}:${partition}`;
      await readTopic(kafka, inputTopic, (record) => addOffset(records, Number(record.offset)), { partitions: [partition], start: { offsets: { [key]: range.start } }, end: { offsets: { [key]: range.frontier } } });
    }
    for (const shard of shardIds) partitions.push(auditPartition(shard, partition, range, records, accounting, inputTopic, problems));
  }
  return { namespace, inputTopic, ok: problems.length === 0, partitions, shards, problems, notes };
}

/** What the committed updates and dead letters account for, by shard and input partition. */
interface Accounting {
  readonly updatesByShard: ReadonlyMap<number, UpdateEntry[]>;
  /** Offsets of update records that did not decode, by shard. */
  readonly undecodable: ReadonlyMap<number, number[]>;
  /** The update records the server refused (offset → error code), by shard. */
  readonly refusedAt: ReadonlyMap<number, ReadonlyMap<number, string>>;
  /** The dead-lettered input offsets, by input partition. */
  readonly deadLettersOf: ReadonlyMap<number, number[]>;
}

/** The topics that exist, the input's offsets and the workers' committed offsets. */
async function readInputState(kafka: Kafka, inputTopic: string, workerGroup: string) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const ends = await admin.fetchTopicOffsets(inputTopic);
    // Stable offsets: on a running pipeline, one a transaction holds pending is asked again.
    const [group] = await withRetry(() => admin.fetchOffsets({ groupId: workerGroup, topics: [inputTopic], requireStable: true }), { retries: 20 });
    const committed = new Map((group?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
    return { existing, ends, committed };
  } finally {
    await admin.disconnect();
  }
}

async function readAccounting(kafka: Kafka, topics: NamespaceTopics, inputTopic: string, existing: ReadonlySet<string>, log: (line: string) => void): Promise<Accounting> {
  log(`reading ${topics.updates}`);
  const updatesByShard = new Map<number, UpdateEntry[]>();
  const undecodable = new Map<number, number[]>();
  await readTopic(kafka, topics.updates, (record) => {
    const decoded = updateCodec.decode(record.value, record);
    if (!decoded.ok) return pushTo(undecodable, record.partition, Number(record.offset));
    const { sampleCount, deadLettered, offsets, workerId, createdAt } = decoded.value;
    pushTo(updatesByShard, record.partition, { offset: Number(record.offset), sampleCount, deadLettered, workerId, createdAt, ranges: offsets });
  });

  log(`reading ${topics.serverDeadLetters} and ${topics.deadLetters}`);
  const refusedAt = new Map<number, Map<number, string>>();
  // Namespaces made before the server had dead letters have no such topic: nothing was refused there.
  const readIfThere: typeof readTopic = (client, topic, visit, options) => (existing.has(topic) ? readTopic(client, topic, visit, options) : Promise.resolve());
  await readIfThere(kafka, topics.serverDeadLetters, (record) => {
    const letter = deadLetterCodec.decode(record.value, record);
    if (!letter.ok) return;
    const byOffset = refusedAt.get(letter.value.partition) ?? new Map<number, string>();
    byOffset.set(letter.value.offset, letter.value.errorCode);
    refusedAt.set(letter.value.partition, byOffset);
  });
  const deadLettersOf = new Map<number, number[]>();
  await readIfThere(kafka, topics.deadLetters, (record) => {
    const letter = deadLetterCodec.decode(record.value, record);
    if (letter.ok && letter.value.topic === inputTopic) pushTo(deadLettersOf, letter.value.partition, letter.value.offset);
  });
  return { updatesByShard, undecodable, refusedAt, deadLettersOf };
}

/** The offsets of an input partition that the audit checks, [start, frontier). */
interface AuditedRange {
  readonly start: number;
  readonly frontier: number;
  /** The partition's dead-lettered offsets. */
  readonly dead: readonly OffsetRun[];
}

/**
 * From the partition's first record to the workers' committed offset; without a committed offset (a replay reads
 * without a group), the range its updates and dead letters cover. Undefined when there is nothing to audit.
 */
function auditedRange(partition: number, low: number, high: number, committed: ReadonlyMap<number, number>, accounting: Accounting, shardIds: readonly number[], inputTopic: string, workerGroup: string, found: { problems: string[]; notes: string[] }): AuditedRange | undefined {
  const dead = (accounting.deadLettersOf.get(partition) ?? []).map((o) => ({ first: o, last: o }));
  const frontier = committed.get(partition) ?? -1;
  if (frontier >= 0) return { start: low, frontier, dead };
  const updates = accounting.updatesByShard.get(shardIds[0] ?? 0) ?? [];
  const accounted = [...dead, ...updates.flatMap((u) => rangesOf(u, inputTopic, partition))];
  if (accounted.length === 0) {
    if (committed.size > 0 && high > low) found.problems.push(`${inputTopic}[${partition}]: ${count(high - low)} records and no committed offset of ${workerGroup}: never trained`);
    return undefined;
  }
  const range = { start: Math.min(...accounted.map((r) => r.first)), frontier: Math.max(...accounted.map((r) => r.last)) + 1, dead };
  found.notes.push(`${inputTopic}[${partition}]: no committed offset of ${workerGroup}; audited the range its updates and dead letters cover, ${range.start}–${range.frontier - 1}`);
  return range;
}

/** The input offsets an update covers in one partition. */
function rangesOf(update: UpdateEntry, inputTopic: string, partition: number): OffsetRun[] {
  return update.ranges.filter((r) => r.topic === inputTopic && r.partition === partition).map((r) => ({ first: r.firstOffset, last: r.lastOffset }));
}

/** One input partition as one shard saw it: every record in exactly one update or dead letter, none past the frontier. */
function auditPartition(shard: number, partition: number, range: AuditedRange, records: readonly OffsetRun[], accounting: Accounting, inputTopic: string, problems: string[]): PartitionAudit {
  const { start, frontier, dead } = range;
  const updates = accounting.updatesByShard.get(shard) ?? [];
  const refused = accounting.refusedAt.get(shard) ?? new Map<number, string>();
  const trainedRuns: OffsetRun[] = [];
  const refusedRuns: OffsetRun[] = [];
  for (const update of updates) {
    if (update.sampleCount > 0) (refused.has(update.offset) ? refusedRuns : trainedRuns).push(...rangesOf(update, inputTopic, partition));
  }
  const all = [...trainedRuns, ...refusedRuns, ...dead];
  const audit: PartitionAudit = {
    shard,
    partition,
    start,
    frontier,
    records: sizeOf(records),
    trained: sizeOf(coverage(records, trainedRuns, (n) => n > 0)),
    deadLettered: sizeOf(coverage(records, dead, (n) => n > 0)),
    refused: sizeOf(coverage(records, refusedRuns, (n) => n > 0)),
    gaps: coverage(records, all, (n) => n === 0),
    overlaps: coverage(records, all, (n) => n > 1),
    beyondFrontier: coverage([{ first: frontier, last: Number.MAX_SAFE_INTEGER }], all, (n) => n > 0),
  };
  const where = `shard ${shard}, ${inputTopic}[${partition}]`;
  if (audit.gaps.length > 0) problems.push(`${where}: ${count(sizeOf(audit.gaps))} records in no update or dead letter (lost): ${describeRuns(audit.gaps)}`);
  if (audit.overlaps.length > 0) problems.push(`${where}: ${count(sizeOf(audit.overlaps))} records in more than one update or dead letter: ${describeRuns(audit.overlaps)}; ${describeCovering(audit.overlaps[0]!, updates, inputTopic, partition)}`);
  if (audit.beyondFrontier.length > 0) problems.push(`${where}: committed outputs cover offsets at or past the committed offset ${frontier}: ${describeRuns(audit.beyondFrontier)}`);
  return audit;
}

/** Which updates cover `run` (offset, worker, age), so that a record trained twice can be traced to its writers. */
function describeCovering(run: OffsetRun, updates: readonly UpdateEntry[], inputTopic: string, partition: number): string {
  const covering = updates.filter((u) => u.sampleCount > 0 && u.ranges.some((r) => r.topic === inputTopic && r.partition === partition && r.firstOffset <= run.last && r.lastOffset >= run.first));
  const shown = covering.slice(0, 8).map((u) => `@${u.offset} by ${u.workerId} at ${new Date(u.createdAt).toISOString()}`);
  return `${run.first}-${run.last} is in the updates ${shown.join(', ')}${covering.length > 8 ? `, … (${covering.length})` : ''}`;
}

/** Versions and counters of one shard against the update records they must account for. */
function auditShard(shard: number, snapshots: readonly ModelSnapshot[], updates: readonly UpdateEntry[], refused: ReadonlyMap<number, string>, undecodable: readonly number[], problems: string[]): ShardAudit {
  const local: string[] = [];
  for (let i = 1; i < snapshots.length; i++) {
    const [before, after] = [snapshots[i - 1]!, snapshots[i]!];
    if (!isLaterSnapshot(after, before)) local.push(`versions do not increase: ${before.version} (updates offset ${before.updatesOffset}) then ${after.version} (updates offset ${after.updatesOffset})`);
  }
  const latest = snapshots.reduce<ModelSnapshot | undefined>((best, s) => (!best || isLaterSnapshot(s, best) ? s : best), undefined);
  const limit = latest?.updatesOffset ?? 0;
  const taken = updates.filter((u) => u.offset < limit);
  const undecodableTaken = undecodable.filter((o) => o < limit).length;
  const kept = taken.filter((u) => !refused.has(u.offset));
  const samples = kept.reduce((n, u) => n + u.sampleCount, 0);
  const deadLettered = kept.reduce((n, u) => n + u.deadLettered, 0);
  const refusedTaken = taken.length - kept.length + undecodableTaken;
  for (const offset of undecodable) if (!refused.has(offset)) local.push(`the update at offset ${offset} cannot be decoded and is not in the server's dead letters`);
  if (latest) {
    if (latest.updatesOffset < 0) local.push(`the newest snapshot (version ${latest.version}) predates updatesOffset: its counters cannot be checked`);
    else {
      const records = taken.length + undecodableTaken;
      if (latest.version !== records) local.push(`version ${latest.version}, but ${count(records)} update records lie below its updatesOffset ${latest.updatesOffset}`);
      if (latest.samplesApplied + latest.samplesDroppedStale !== samples) local.push(`samplesApplied ${count(latest.samplesApplied)} + samplesDroppedStale ${count(latest.samplesDroppedStale)} ≠ ${count(samples)} samples in the updates taken in`);
      if (latest.deadLettered !== deadLettered) local.push(`deadLettered ${count(latest.deadLettered)} ≠ ${count(deadLettered)} in the updates taken in`);
      if (latest.updatesRefused !== refusedTaken) local.push(`updatesRefused ${count(latest.updatesRefused)} ≠ ${count(refusedTaken)} refused records in ${'<ns>.ps.dlq'}`);
    }
  } else if (updates.length > 0) {
    local.push(`${count(updates.length)} committed updates and no committed snapshot`);
  }
  for (const line of local) problems.push(`shard ${shard}: ${line}`);
  return {
    shard,
    snapshots: snapshots.length,
    version: latest?.version ?? 0,
    samplesApplied: latest?.samplesApplied ?? 0,
    samplesDroppedStale: latest?.samplesDroppedStale ?? 0,
    deadLettered: latest?.deadLettered ?? 0,
    updatesRefused: latest?.updatesRefused ?? 0,
    samplesRefused: latest?.samplesRefused ?? 0,
    updatesTaken: taken.length + undecodableTaken,
    updatesPending: updates.filter((u) => u.offset >= limit).length,
    problems: local,
  };
}

/** The audit as a person reads it: a table per partition and shard, the problems, and the verdict. */
export function formatAudit(report: AuditReport): string {
  const header = ['shard', 'partition', 'records', 'trained', 'dead-lettered', 'refused', 'lost', 'twice'];
  const rows = report.partitions.map((p) => [String(p.shard), String(p.partition), count(p.records), count(p.trained), count(p.deadLettered), count(p.refused), count(sizeOf(p.gaps)), count(sizeOf(p.overlaps))]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  const shards = report.shards.map(
    (s) => `shard ${s.shard}: ${count(s.snapshots)} snapshots, version ${count(s.version)} = update records taken in ${count(s.updatesTaken)} (${count(s.updatesPending)} not yet taken); samples applied ${count(s.samplesApplied)}, dropped stale ${count(s.samplesDroppedStale)}, dead-lettered ${count(s.deadLettered)}, refused ${count(s.updatesRefused)} updates / ${count(s.samplesRefused)} samples`,
  );
  return [
    `audit of namespace ${report.namespace} (input ${report.inputTopic})`,
    '',
    line(header),
    ...rows.map(line),
    '',
    ...shards,
    '',
    ...report.notes.map((n) => `note: ${n}`),
    ...report.problems.map((p) => `FAIL ${p}`),
    report.ok ? 'OK: every input record up to the committed offsets is trained or dead-lettered exactly once, and every shard accounts for every update' : `FAILED: ${report.problems.length} problem(s)`,
  ].join('\n');
}
