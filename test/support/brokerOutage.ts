import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { expect } from 'vitest';
import { auditNamespace, formatAudit } from '../../pipeline/commands/audit.js';
import { createTopics, topicsOf } from '../../pipeline/common/topics.js';
import { codecFor } from '../../schemas/index.js';
import { sineReading } from './arbitraries.js';
import { runInfraScript, startOwnKafka } from './broker.js';
import { answerWithin, waitFor, type TsChild } from './childProcess.js';
import { chaosExperiment, CliProcesses, describeOverlaps, outageScenario, recordChaosRun, waitUntilAccounted } from './processes.js';
import { writeExperimentFile } from './snapshots.js';

/** One broker-outage scenario: a broker (or cluster) of its own, since it kills a broker, which the shared test broker must never lose. */
export interface BrokerOutage {
  /** 1: the single broker is killed, and the workers wait for it; 3: one broker of three is killed, and nothing waits. */
  readonly nodes: 1 | 3;
  /** The first broker port (its controllers listen 1,000 above). */
  readonly port: number;
  readonly records: number;
  /** How long the killed broker stays down. */
  readonly outageMs: number;
  /**
   * How long the whole scenario may wait, all waits together: a test passes a little less than its own timeout, so
   * that a stall fails with the processes' report rather than as a bare test timeout.
   */
  readonly budgetMs?: number;
}

/**
 * A server and two workers train on a pre-filled topic; one broker is SIGKILLed and started again `outageMs` later.
 * Asserts that no process exits, that (on a cluster) training goes on while the broker is away, and that the audit
 * accounts for every record exactly once. Returns what happened, for the test's log.
 */
export async function brokerOutage({ nodes, port, records: total, outageMs, budgetMs = Number.POSITIVE_INFINITY }: BrokerOutage): Promise<string> {
  const startedAt = Date.now();
  /** A wait's own timeout, cut to what is left of the budget. */
  const within = (timeoutMs: number) => Math.max(1_000, Math.min(timeoutMs, startedAt + budgetMs - Date.now()));
  const dataDir = mkdtempSync(join(tmpdir(), `streamgrad-outage${nodes}-`));
  const start = () => startOwnKafka(['--nodes', String(nodes), '--port', String(port), '--data-dir', dataDir]);
  const brokers = await start();
  const kafka = new Kafka({ clientId: 'outage-test', brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  const namespace = 'outage';
  const input = 'outage.in';
  const processes = new CliProcesses(writeExperimentFile(chaosExperiment(brokers, namespace, input)), brokers);
  const failWithReport = async (error: Error) => {
    const where = await answerWithin(positions().catch((e: Error) => `(positions unknown: ${e.message})`), 10_000, '(positions unknown: the broker did not answer in 10 s)');
    throw new Error(`${error.message}\n${where}\n${processes.report()}`);
  };
  /** Each input partition's end and the workers' committed offset, and the same for the updates and the server: where a stall stands. */
  const positions = async () => {
    const topics = topicsOf(namespace);
    const lines: string[] = [];
    for (const [topic, groupId] of [[input, topics.workerGroup], [topics.updates, topics.serverGroup]] as const) {
      const [ends, [committed]] = await Promise.all([admin.fetchTopicOffsets(topic), admin.fetchOffsets({ groupId, topics: [topic] })]);
      lines.push(`${topic} (end/committed by ${groupId}): ${ends.map(({ partition, high }) => `[${partition}] ${high}/${committed?.partitions.find((p) => p.partition === partition)?.offset ?? '-'}`).join(', ')}`);
    }
    return lines.join('\n');
  };
  try {
    await admin.connect();
    await createTopics(admin, [{ topic: input, numPartitions: 4 }]);
    const samples = codecFor('TrainingSample');
    const producer = kafka.producer();
    await producer.connect();
    for (let from = 0; from < total; from += 5_000) {
      await producer.send({ topic: input, acks: -1, messages: Array.from({ length: Math.min(5_000, total - from) }, (_, k) => ({ key: `d${(from + k) % 13}`, value: (from + k) % 997 === 3 ? Buffer.from('corrupt') : samples.encode(sineReading(from + k, { devices: 13, label: Math.sin, extra: [1, 0] })) })) });
    }
    await producer.disconnect();
    const server = processes.spawn('ps');
    const workers = [processes.spawn('worker'), processes.spawn('worker')];
    const topics = topicsOf(namespace);
    const committed = async () => (await admin.fetchOffsets({ groupId: topics.workerGroup, topics: [input] }))[0]?.partitions.reduce((n, p) => n + Math.max(0, Number(p.offset)), 0) ?? 0;
    await waitFor('the workers to commit 2,000 records', async () => (await committed()) >= 2_000, within(120_000), 200).catch(failWithReport);

    // On a cluster, any one broker: the run's time picks it.
    const victim = nodes === 1 ? 1 : 1 + (Date.now() % 3);
    const pid = Number(readFileSync(join(dataDir, `node${victim}`, 'pid'), 'utf8'));
    const before = await committed();
    process.kill(pid, 'SIGKILL');
    processes.note(`broker ${victim} of ${nodes} SIGKILLed at ${before} records committed`);
    const downUntil = Date.now() + outageMs;
    if (nodes === 3) {
      // Two brokers of three hold every partition's quorum (min.insync.replicas 2): training must go on meanwhile.
      await waitFor('training to go on with one broker down', async () => (await committed()) >= Math.min(total - 1_000, before + 5_000), within(Math.max(outageMs, 60_000)), 500).catch(failWithReport);
      processes.note(`${(await committed()) - before} records committed with broker ${victim} down`);
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, downUntil - Date.now())));
    await start();
    processes.note(`broker ${victim} back`);

    await waitUntilAccounted(admin, namespace, input, within(Math.max(240_000, total * 3))).catch(failWithReport);
    expect(processes.exitedOnTheirOwn(new Set()), processes.report()).toEqual([]);
    const everyone: TsChild[] = [server, ...workers];
    for (const child of everyone) child.process.kill('SIGTERM');
    await waitFor('every process to exit after SIGTERM', () => everyone.every((child) => child.process.exitCode !== null || child.process.signalCode !== null), within(60_000), 200).catch(failWithReport);
    expect(await Promise.all(everyone.map((child) => child.exited)), processes.report()).toEqual(everyone.map(() => 0));

    const report = await auditNamespace({ kafka, namespace, inputTopic: input });
    recordChaosRun({ scenario: outageScenario(nodes, outageMs / 1000), records: total, joins: 2, leaves: 0, kills: 0, serverKills: 0, outages: 1, seconds: Math.round((Date.now() - startedAt) / 1000) }, report);
    expect(report.problems, `${formatAudit(report)}\n${report.ok ? '' : processes.report()}\n${await describeOverlaps(kafka, namespace, report)}`).toEqual([]);
    expect(report.partitions.filter((p) => p.shard === 0).reduce((n, p) => n + p.records, 0)).toBe(total);
    return `${processes.events.join('\n')}\n${formatAudit(report)}`;
  } finally {
    processes.killAll();
    await admin.disconnect().catch(() => {});
    await runInfraScript('stop', ['--clean', '--data-dir', dataDir]);
  }
}
