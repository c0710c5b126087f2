import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { describe, expect, it, onTestFinished } from 'vitest';
import { auditNamespace, formatAudit } from '../../pipeline/commands/audit.js';
import { readTopic } from '../../pipeline/common/readTopic.js';
import { topicsOf } from '../../pipeline/common/topics.js';
import { codecFor } from '../../schemas/index.js';
import { sineReading } from '../support/arbitraries.js';
import { ownBrokerPorts, runInfraScript } from '../support/broker.js';
import { waitFor, type TsChild } from '../support/childProcess.js';
import { IsolatedHost } from '../support/netns.js';
import { chaosExperiment, CliProcesses, waitUntilAccounted } from '../support/processes.js';
import { writeExperimentFile } from '../support/snapshots.js';

// The zombie runs in a network namespace of its own, so the broker listens on the host end of its veth pair: a
// broker of this test's own, on its own port.
const port = ownBrokerPorts.zombie;
const sessionTimeoutMs = 8_000;
const unavailable = IsolatedHost.unavailable();
if (unavailable) console.error(`[zombie] not run: ${unavailable}. It needs root and iproute2; CI runs it.`);

describe.skipIf(unavailable !== undefined)('zombie worker', () => {
  it('a worker cut off from the broker past its session timeout is fenced when it comes back: nothing it computed while cut off is committed, nothing is lost', async () => {
    const host = new IsolatedHost((process.pid % 250) + 1);
    host.create();
    onTestFinished(() => host.remove());
    const dataDir = mkdtempSync(join(tmpdir(), 'streamgrad-zombie-'));
    const started = await runInfraScript('start', ['--port', String(port), '--host', host.hostAddress, '--data-dir', dataDir]);
    onTestFinished(async () => void (await runInfraScript('stop', ['--clean', '--data-dir', dataDir])));
    expect(started.code, started.stderr).toBe(0);
    const brokers = [started.stdout.split('\n').at(-1)!];
    const kafka = new Kafka({ clientId: 'zombie-test', brokers, logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    onTestFinished(() => admin.disconnect());

    const namespace = 'zombie';
    const input = 'zombie.in';
    const topics = topicsOf(namespace);
    const total = 80_000;
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic: input, numPartitions: 4 }] });
    const samples = codecFor('TrainingSample');
    const producer = kafka.producer();
    await producer.connect();
    for (let from = 0; from < total; from += 10_000) {
      await producer.send({ topic: input, acks: -1, messages: Array.from({ length: 10_000 }, (_, k) => ({ key: `d${(from + k) % 7}`, value: (from + k) % 997 === 3 ? Buffer.from('corrupt') : samples.encode(sineReading(from + k, { devices: 7, label: Math.sin, extra: [1, 0] })) })) });
    }
    await producer.disconnect();

    const processes = new CliProcesses(writeExperimentFile(chaosExperiment(brokers, namespace, input, sessionTimeoutMs)), brokers);
    onTestFinished(() => processes.killAll());
    const report = (error: Error) => {
      throw new Error(`${error.message}\n${processes.report()}`);
    };
    const committed = async () => (await admin.fetchOffsets({ groupId: topics.workerGroup, topics: [input] }))[0]?.partitions.reduce((n, p) => n + Math.max(0, Number(p.offset)), 0) ?? 0;

    const server = processes.spawn('ps');
    const zombie = processes.spawn('worker', host.wrapper);
    const zombieId = await waitForWorkerId(zombie).catch(report);
    await waitFor('the zombie to commit 2,000 records', async () => (await committed()) >= 2_000, 120_000, 100).catch(report);

    host.cut();
    const cutAt = Date.now();
    processes.note(`zombie ${zombieId} cut off at ${await committed()} records committed`);
    const worker = processes.spawn('worker');
    // The group moves on without the zombie: its session times out, the other worker takes every partition over and
    // commits past where the zombie stopped.
    const atCut = await committed();
    await waitFor('the other worker to take the zombie\'s partitions over', async () => {
      const [group] = (await admin.describeGroups([topics.workerGroup])).groups;
      return group?.state === 'Stable' && group.members.length === 1 && (await committed()) >= atCut + 5_000;
    }, 120_000, 250).catch(report);
    // Well past the session timeout, with the zombie still computing from what it had fetched.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, cutAt + 2 * sessionTimeoutMs - Date.now())));
    host.connect();
    const backAt = Date.now();
    processes.note('zombie reconnected');
    // Before anything stops: the zombie learns, now that it is back, that every partition it had moved on.
    const ended = (partition: number) => zombie.errors.some((line) => line.includes(`${input}[${partition}] ended: `) && / ended: (fenced|lost)/.test(line));
    await waitFor('the zombie to end each of its lanes as fenced or lost', () => [0, 1, 2, 3].every(ended), 120_000, 100).catch(report);
    processes.note('the zombie ended its lanes');

    await waitUntilAccounted(admin, namespace, input, 300_000).catch(report);
    expect(processes.exitedOnTheirOwn(new Set()), processes.report()).toEqual([]);
    const everyone: TsChild[] = [server, zombie, worker];
    for (const child of everyone) child.process.kill('SIGTERM');
    expect(await Promise.all(everyone.map((child) => child.exited)), processes.report()).toEqual([0, 0, 0]);

    // The zombie learnt, when it came back, that its partitions had moved on, and dropped what it had computed.
    const fenced = zombie.errors.filter((line) => / ended: (fenced|lost)/.test(line));
    expect(fenced.length, processes.report()).toBeGreaterThan(0);
    expect(fenced.some((line) => /; [1-9]\d* record\(s\) read and not committed/.test(line)), fenced.join('\n')).toBe(true);
    // None of it was committed: no committed update of the zombie's was built while it was cut off.
    const updates = codecFor('ParameterUpdate');
    const whileCutOff: string[] = [];
    await readTopic(kafka, topics.updates, (record) => {
      const decoded = updates.decode(record.value, record);
      if (decoded.ok && decoded.value.workerId === zombieId && decoded.value.createdAt > cutAt && decoded.value.createdAt < backAt) whileCutOff.push(`${record.partition}@${record.offset}`);
    });
    expect(whileCutOff).toEqual([]);
    // And every record is accounted for exactly once.
    const audit = await auditNamespace({ kafka, namespace, inputTopic: input });
    console.error(`[zombie]\n${processes.events.join('\n')}\n${fenced.join('\n')}\n${formatAudit(audit)}`);
    expect(audit.problems).toEqual([]);
    expect(audit.partitions.filter((p) => p.shard === 0).reduce((n, p) => n + p.records, 0)).toBe(total);
  }, 480_000);
});

/** The worker's id (`host-pid`), from its first log line. */
async function waitForWorkerId(child: TsChild): Promise<string> {
  let id: string | undefined;
  await waitFor(`worker ${child.process.pid} to say its id`, () => {
    id = child.errors.map((line) => /^\[worker (\S+)\]/.exec(line)?.[1]).find((found) => found !== undefined);
    return id !== undefined || child.process.exitCode !== null;
  }, 60_000, 100);
  if (!id) throw new Error(`worker ${child.process.pid} exited before saying its id`);
  return id;
}
