import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Admin, Kafka } from 'kafkajs';
import type { AuditReport } from '../../pipeline/commands/audit.js';
import { readTopic } from '../../pipeline/common/readTopic.js';
import { topicsOf } from '../../pipeline/common/topics.js';
import { codecFor } from '../../schemas/index.js';
import { cliPath, spawnTs, waitFor, type TsChild } from './childProcess.js';

/** The `streamgrad` processes of one test (servers and workers), each with its output kept for a failure report. */
export class CliProcesses {
  private readonly everyone: Array<{ name: string; child: TsChild }> = [];
  private readonly started = Date.now();
  /** What happened when, for a failure report. */
  readonly events: string[] = [];
  /** The workers still running. */
  readonly workers = new Set<TsChild>();

  /** `brokers`: where the processes connect (KAFKA_BROKERS overrides a config's brokers, so it is set for them). */
  constructor(private readonly configFile: string, private readonly brokers: readonly string[]) {}

  /** Starts `streamgrad <command> --config <file>`, through `wrapper` when given (say, `ip netns exec NS`). */
  spawn(command: 'ps' | 'worker', wrapper?: readonly string[]): TsChild {
    const child = spawnTs(cliPath, [command, '--config', this.configFile], { quiet: true, wrapper, env: { KAFKA_BROKERS: this.brokers.join(',') } });
    this.everyone.push({ name: `${command} ${child.process.pid}`, child });
    if (command === 'worker') {
      this.workers.add(child);
      void child.exited.then(() => this.workers.delete(child));
    }
    this.note(`${command} ${child.process.pid} started`);
    return child;
  }

  /** Sends `signal` to a worker, which then no longer counts as running. */
  signal(child: TsChild, signal: 'SIGKILL' | 'SIGTERM'): void {
    this.workers.delete(child);
    child.process.kill(signal);
    this.note(`worker ${child.process.pid} ${signal}`);
  }

  note(what: string): void {
    this.events.push(`${((Date.now() - this.started) / 1000).toFixed(1)}s ${what}`);
  }

  /** Processes that ended without being asked to. */
  exitedOnTheirOwn(asked: ReadonlySet<TsChild>): string[] {
    return this.everyone.filter(({ child }) => !asked.has(child) && child.process.exitCode !== null).map(({ name, child }) => `${name} exited ${child.process.exitCode}`);
  }

  /** Waits until `child` runs its service (it says so), so that a SIGTERM is a clean stop. */
  async ready(child: TsChild, timeoutMs = 120_000): Promise<void> {
    await waitFor(`process ${child.process.pid} to start`, () => child.errors.some((line) => line.includes('] running; SIGTERM')) || child.process.exitCode !== null, timeoutMs, 100);
  }

  /** SIGKILLs whatever still runs: a failed test leaves nothing behind. */
  killAll(): void {
    for (const { child } of this.everyone) if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
  }

  /** The events and the last lines each process wrote; every process's whole output goes to a folder it names. */
  report(): string {
    const dir = mkdtempSync(join(tmpdir(), 'streamgrad-processes-'));
    for (const { name, child } of this.everyone) writeFileSync(join(dir, `${name.replace(' ', '-')}.log`), `${child.errors.join('\n')}\n`);
    return [...this.events, ...this.everyone.map(({ name, child }) => `--- ${name}\n${child.errors.slice(-10).join('\n')}`), `(every line of every process: ${dir})`].join('\n');
  }
}

/** Waits (`timeoutMs` in all) until the workers' group has committed every record of `inputTopic` and the server has taken in every committed update. */
export async function waitUntilAccounted(admin: Admin, namespace: string, inputTopic: string, timeoutMs: number): Promise<void> {
  const topics = topicsOf(namespace);
  const deadline = Date.now() + timeoutMs;
  await waitFor('the workers to commit every record', async () => {
    const [ends, [committed]] = await Promise.all([admin.fetchTopicOffsets(inputTopic), admin.fetchOffsets({ groupId: topics.workerGroup, topics: [inputTopic] })]);
    return ends.every(({ partition, high }) => Number(high) === 0 || Number(committed?.partitions.find((p) => p.partition === partition)?.offset ?? -1) >= Number(high));
  }, timeoutMs, 500);
  // The server commits its position in <ns>.updates in the transaction of the snapshot that takes the updates in. A
  // partition can end in markers only (the last transaction's commit, or an abort after an outage), which the
  // snapshot's own updatesOffset does not pass; the committed position does.
  await waitFor('the server to take in every update', async () => {
    const [ends, [committed]] = await Promise.all([admin.fetchTopicOffsets(topics.updates), admin.fetchOffsets({ groupId: topics.serverGroup, topics: [topics.updates] })]);
    return ends.every(({ partition, high }) => Number(high) === 0 || Number(committed?.partitions.find((p) => p.partition === partition)?.offset ?? -1) >= Number(high) - 1);
  }, Math.max(1_000, deadline - Date.now()), 500);
}

/** One chaos run's figures, as `npm run chaos` collects them into RELIABILITY.md. */
export interface ChaosFigures {
  readonly scenario: string;
  readonly seed?: number;
  readonly records: number;
  readonly joins: number;
  readonly leaves: number;
  readonly kills: number;
  readonly serverKills: number;
  readonly outages: number;
  readonly seconds: number;
}

/** A run's figures with what its audit found: one line of RELIABILITY.md. */
export interface ChaosRun extends ChaosFigures {
  readonly lost: number;
  readonly twice: number;
  /** The ingest scenario's records written again after a crash (its edge is at least once; training's is exactly once). */
  readonly duplicates?: number;
  readonly ok: boolean;
  readonly problems: readonly string[];
  readonly at: string;
}

/** Appends a run's figures and what its audit found to `STREAMGRAD_CHAOS_LOG`, when set (by `npm run chaos`). */
export function recordChaosRun(figures: ChaosFigures, report: AuditReport): void {
  const first = report.partitions.filter((p) => p.shard === report.partitions[0]?.shard);
  const size = (runs: ReadonlyArray<{ first: number; last: number }>) => runs.reduce((n, r) => n + r.last - r.first + 1, 0);
  const lost = first.reduce((n, p) => n + size(p.gaps), 0);
  const twice = first.reduce((n, p) => n + size(p.overlaps), 0);
  appendChaosRun({ ...figures, lost, twice, ok: report.ok, problems: report.problems.slice(0, 5), at: new Date().toISOString() });
}

/** Adds one run's line to the log `npm run chaos` renders RELIABILITY.md from (nothing outside `npm run chaos`). */
export function appendChaosRun(run: ChaosRun): void {
  const file = process.env.STREAMGRAD_CHAOS_LOG;
  if (file) appendFileSync(file, `${JSON.stringify(run)}\n`);
}

/** The MQTT ingest scenario's name in RELIABILITY.md. */
export function ingestScenario(outageSeconds: number): string {
  return `ingest: 2 bridge SIGKILLs, Kafka kill -9 ${outageSeconds} s down`;
}

/** A broker-outage scenario's name in RELIABILITY.md. */
export function outageScenario(nodes: 1 | 3, outageSeconds: number): string {
  return nodes === 1 ? `broker kill -9, ${outageSeconds} s down` : `1 of 3 brokers kill -9, ${outageSeconds} s down`;
}

/** For a failed audit: the committed updates that cover each overlap it found (where they are, who built them, when). */
export async function describeOverlaps(kafka: Kafka, namespace: string, report: AuditReport): Promise<string> {
  const overlaps = report.partitions.flatMap((p) => p.overlaps.map((run) => ({ shard: p.shard, partition: p.partition, ...run })));
  if (overlaps.length === 0) return '';
  const codec = codecFor('ParameterUpdate');
  const lines: string[] = [];
  await readTopic(kafka, topicsOf(namespace).updates, (record) => {
    const decoded = codec.decode(record.value, record);
    if (!decoded.ok) return;
    const update = decoded.value;
    const hit = update.offsets.some((span) => overlaps.some((o) => o.shard === update.shard && o.partition === span.partition && span.firstOffset <= o.last && span.lastOffset >= o.first));
    if (hit) lines.push(`updates[${record.partition}]@${record.offset} appended ${new Date(Number(record.timestamp)).toISOString()}: worker ${update.workerId}, created ${new Date(update.createdAt).toISOString()}, base v${update.baseVersion}, ${update.sampleCount} samples, offsets ${update.offsets.map((s) => `${s.partition}:${s.firstOffset}-${s.lastOffset}`).join(' ')}`);
  });
  return lines.slice(0, 60).join('\n');
}

/**
 * The experiment of the process-level chaos tests: a small MLP in two shards, small batches and frequent
 * checkpoints and snapshots, so that a kill or an outage always lands mid-transaction.
 */
export function chaosExperiment(brokers: readonly string[], namespace: string, inputTopic: string, sessionTimeoutMs = 10_000) {
  return {
    brokers,
    namespace,
    inputTopic,
    model: { kind: 'mlp', features: 4, shards: 2, layers: [{ units: 16 }] },
    batchSize: 32,
    checkpointIntervalMs: 200,
    sessionTimeoutMs,
    server: { snapshotEveryUpdates: 20, snapshotIntervalMs: 100 },
  };
}
