import { describe, expect, onTestFinished } from 'vitest';
import { auditNamespace, formatAudit } from '../../pipeline/commands/audit.js';
import { parseExperiment } from '../../pipeline/common/config.js';
import { latestSnapshots } from '../../pipeline/common/modelStore.js';
import { readTopic } from '../../pipeline/common/readTopic.js';
import { Replica } from '../../pipeline/worker/replica.js';
import { seededRandom } from '../../pipeline/commands/simulator.js';
import { topicsOf } from '../../pipeline/common/topics.js';
import { codecFor, encodeTensor, type ParameterUpdate } from '../../schemas/index.js';
import { sineRecord } from '../support/arbitraries.js';
import { waitFor } from '../support/childProcess.js';
import { chaosExperiment, CliProcesses, recordChaosRun, waitUntilAccounted } from '../support/processes.js';
import { kafkaTest as test } from '../support/kafka.js';
import { writeExperimentFile } from '../support/snapshots.js';

const poisonBytes = 2 * 1024 * 1024;

describe('chaos', () => {
  test('workers join, leave and are SIGKILLed, the server is SIGKILLed and restarted, poison pills arrive: the audit accounts for every record exactly once', async ({ kafka }) => {
    const seed = Number(process.env.STREAMGRAD_CHAOS_SEED ?? Date.now() % 100_000);
    const random = seededRandom(seed);
    const startedAt = Date.now();
    const partitions = 5;
    // npm run chaos sets the size; npm test runs 60,000 records.
    const records = Number(process.env.STREAMGRAD_CHAOS_RECORDS ?? 60_000);
    const backlog = Math.floor(records / 2);
    const streamed = records - backlog;
    const churnMs = 30_000;
    // The input topic takes the 2 MiB poison pill; the worker's own limit (1 MiB) dead-letters it.
    const input = await kafka.createTopic({ partitions, prefix: 'chaos', configEntries: { 'max.message.bytes': String(3 * 1024 * 1024) } });
    const namespace = `chaos-${input}`;
    const topics = topicsOf(namespace);
    const record = sineRecord({ devices: 13, label: Math.sin, extra: [1, 0], corrupt: (i) => i % 997 === 3 });
    await kafka.produce(input, backlog, record);
    const experiment = chaosExperiment(kafka.brokers, namespace, input);
    const configFile = writeExperimentFile(experiment);
    const processes = new CliProcesses(configFile, kafka.brokers);
    const fail = (error: Error) => {
      throw new Error(`seed ${seed}: ${error.message}\n${processes.report()}`);
    };
    let server = processes.spawn('ps');
    onTestFinished(() => processes.killAll());
    processes.spawn('worker');
    processes.spawn('worker');
    await waitFor('the namespace topics', async () => (await kafka.admin.listTopics()).includes(topics.serverDeadLetters), 60_000, 200);

    // Poison on both sides: a 2 MiB input record, and updates no server can apply.
    const producer = await kafka.producer();
    await producer.send({ topic: input, acks: -1, messages: [{ partition: 2, key: 'poison', value: Buffer.alloc(poisonBytes, 0x42) }] });
    const spec = parseExperiment(experiment).model;
    const replica = new Replica(spec);
    const variable = replica.weights().find((w) => replica.shardOf(w.name) === 0)!;
    replica.dispose();
    const nonFinite = encodeTensor(variable.name, variable.shape, new Float32Array(variable.values.length), 'FP32');
    nonFinite.bytes.writeFloatLE(Number.POSITIVE_INFINITY, 0);
    const forged: ParameterUpdate = {
      namespace, shard: 0, workerId: 'forger', baseVersion: 0, sampleCount: 7, lossSum: 0, deadLettered: 0,
      offsets: [{ topic: 'forged', partition: 0, firstOffset: 0, lastOffset: 6 }], firstAppendTime: 0, lastAppendTime: 0, createdAt: 0, tensors: [nonFinite], featureMoments: null, prequential: [],
    };
    await producer.send({ topic: topics.updates, acks: -1, messages: [{ partition: 0, key: '0', value: codecFor('ParameterUpdate').encode(forged) }, { partition: 1, key: '1', value: Buffer.from('not an update') }] });

    // Churn while records keep arriving.
    let sent = backlog;
    const churnUntil = Date.now() + churnMs;
    let serverKilled = false;
    let kills = 0;
    let leaves = 0;
    let joins = 2;
    while (Date.now() < churnUntil) {
      const chunk = Math.min(streamed - (sent - backlog), Math.ceil(streamed / (churnMs / 500)));
      if (chunk > 0) {
        const from = sent;
        await kafka.produce(input, chunk, (i) => record(from + i));
        sent += chunk;
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      if (!serverKilled && Date.now() > churnUntil - churnMs / 2) {
        serverKilled = true;
        server.process.kill('SIGKILL');
        await server.exited;
        processes.note('server SIGKILLed');
        server = processes.spawn('ps');
      }
      if (random() > 0.2) continue;
      const alive = [...processes.workers];
      const action = random();
      if (alive.length < 3 && (alive.length < 2 || action < 0.4)) {
        processes.spawn('worker');
        joins++;
      } else {
        const victim = alive[Math.floor(random() * alive.length)]!;
        const signal = action < 0.7 ? 'SIGKILL' : 'SIGTERM';
        processes.signal(victim, signal);
        if (signal === 'SIGKILL') kills++;
        else leaves++;
      }
    }
    if (processes.workers.size === 0) processes.spawn('worker');
    const total = sent + 1;
    const ends = async () => (await kafka.admin.fetchTopicOffsets(input)).reduce((n, p) => n + Number(p.high), 0);
    expect(await ends()).toBe(total);
    await waitUntilAccounted(kafka.admin, namespace, input, Math.max(180_000, records * 3)).catch(fail);
    const workers = [...processes.workers];
    await Promise.all([server, ...workers].map((child) => processes.ready(child)));
    for (const worker of workers) worker.process.kill('SIGTERM');
    server.process.kill('SIGTERM');
    const codes = await Promise.all(workers.map((w) => w.exited));
    expect(codes.every((code) => code === 0), `workers' exit codes ${codes.join(', ')}\n${processes.report()}`).toBe(true);
    expect(await server.exited, processes.report()).toBe(0);

    const report = await auditNamespace({ kafka: kafka.kafka, namespace, inputTopic: input });
    console.error(`[chaos] seed ${seed}: ${total} records, ${joins} joins, ${leaves} leaves, ${kills} SIGKILLs, server SIGKILLed once\n${processes.events.join('\n')}\n${formatAudit(report)}`);
    recordChaosRun({ scenario: 'churn', seed, records: total, joins, leaves, kills, serverKills: 1, outages: 0, seconds: Math.round((Date.now() - startedAt) / 1000) }, report);
    expect(report.problems, `seed ${seed}`).toEqual([]);
    expect(report.ok).toBe(true);
    for (const p of report.partitions) expect(p.trained + p.deadLettered, `shard ${p.shard} partition ${p.partition}`).toBe(p.records);
    expect(report.partitions.reduce((n, p) => n + (p.shard === 0 ? p.records : 0), 0)).toBe(total);

    // The poison: one dead letter that fits, with the size and hash of the original; the forged updates refused and counted.
    const letters: Array<{ size: number; truncated: boolean }> = [];
    await readTopic(kafka.kafka, topics.deadLetters, (r) => {
      const letter = codecFor('DeadLetter').decode(r.value, r);
      if (letter.ok && letter.value.errorCode === 'OVERSIZED') letters.push({ size: letter.value.valueSize, truncated: letter.value.valueTruncated });
    });
    expect(letters).toEqual([{ size: poisonBytes, truncated: true }]);
    const latest = await latestSnapshots(kafka.kafka, namespace);
    expect(latest.get(0)?.refusedByReason).toEqual({ NON_FINITE: 1 });
    expect(latest.get(1)?.refusedByReason).toEqual({ DECODE: 1 });
    expect(latest.get(0)?.samplesRefused).toBe(7);
  }, Math.max(420_000, Number(process.env.STREAMGRAD_CHAOS_RECORDS ?? 0) * 8));
});
