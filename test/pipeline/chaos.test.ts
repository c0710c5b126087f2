import { describe, expect } from 'vitest';
import { auditNamespace, formatAudit } from '../../pipeline/audit.js';
import { parseExperiment } from '../../pipeline/config.js';
import { latestSnapshots } from '../../pipeline/modelStore.js';
import { readTopic } from '../../pipeline/readTopic.js';
import { Replica } from '../../pipeline/replica.js';
import { topicsOf } from '../../pipeline/topics.js';
import { codecFor, encodeTensor, type ParameterUpdate } from '../../schemas/index.js';
import { sineReading } from '../support/arbitraries.js';
import { cliPath, spawnTs, waitFor, type TsChild } from '../support/childProcess.js';
import { kafkaTest as test } from '../support/kafka.js';
import { writeExperimentFile } from '../support/snapshots.js';

/** A small deterministic generator, so a failing run can be told apart by its seed. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const poisonBytes = 2 * 1024 * 1024;

describe('chaos', () => {
  test('workers join, leave and are SIGKILLed, the server is SIGKILLed and restarted, poison pills arrive: the audit accounts for every record exactly once', async ({ kafka }) => {
    const seed = Number(process.env.STREAMGRAD_CHAOS_SEED ?? Date.now() % 100_000);
    const random = mulberry32(seed);
    const partitions = 5;
    const backlog = 30_000;
    const streamed = 30_000;
    const churnMs = 30_000;
    // The input topic takes the 2 MiB poison pill; the worker's own limit (1 MiB) dead-letters it.
    const input = await kafka.createTopic({ partitions, prefix: 'chaos', configEntries: { 'max.message.bytes': String(3 * 1024 * 1024) } });
    const namespace = `chaos-${input}`;
    const topics = topicsOf(namespace);
    const samples = codecFor('TrainingSample');
    const record = (i: number) => ({
      key: `d${i % 13}`,
      value: i % 997 === 3 ? Buffer.from('corrupt') : samples.encode(sineReading(i, { devices: 13, label: Math.sin, extra: [1, 0] })),
    });
    await kafka.produce(input, backlog, record);
    const experiment = {
      brokers: kafka.brokers,
      namespace,
      inputTopic: input,
      model: { kind: 'mlp', features: 4, shards: 2, layers: [{ units: 16 }] },
      batchSize: 32,
      checkpointIntervalMs: 200,
      sessionTimeoutMs: 10_000,
      server: { snapshotEveryUpdates: 20, snapshotIntervalMs: 100 },
    };
    const configFile = writeExperimentFile(experiment);
    const events: string[] = [];
    const note = (what: string) => events.push(`${((Date.now() - started) / 1000).toFixed(1)}s ${what}`);
    const started = Date.now();

    const everyone: Array<{ name: string; child: TsChild }> = [];
    const spawnCli = (args: string[]) => {
      const child = spawnTs(cliPath, [...args, '--config', configFile], { quiet: true });
      everyone.push({ name: `${args[0]} ${child.process.pid}`, child });
      return child;
    };
    /** What the processes said last and where the offsets stand, for a failure to explain itself. */
    const explain = async (error: Error) => {
      const [ends, committed] = await Promise.all([kafka.admin.fetchTopicOffsets(input), kafka.admin.fetchOffsets({ groupId: topics.workerGroup, topics: [input] })]);
      const offsets = ends.map((p) => `${p.partition}: ${committed[0]?.partitions.find((c) => c.partition === p.partition)?.offset ?? '-'}/${p.high}`).join(', ');
      const tails = everyone.map(({ name, child }) => `--- ${name}\n${child.errors.slice(-8).join('\n')}`).join('\n');
      return new Error(`seed ${seed}: ${error.message}\ncommitted/end per partition: ${offsets}\n${events.join('\n')}\n${tails}`);
    };
    let server = spawnCli(['ps']);
    const workers = new Set<TsChild>();
    const addWorker = () => {
      const worker = spawnCli(['worker']);
      workers.add(worker);
      void worker.exited.then(() => workers.delete(worker));
      note(`worker ${worker.process.pid} started`);
    };
    addWorker();
    addWorker();
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
      offsets: [{ topic: 'forged', partition: 0, firstOffset: 0, lastOffset: 6 }], firstAppendTime: 0, lastAppendTime: 0, createdAt: 0, tensors: [nonFinite],
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
        note('server SIGKILLed');
        server = spawnCli(['ps']);
        note('server restarted');
      }
      if (random() > 0.2) continue;
      const alive = [...workers];
      const action = random();
      if (alive.length < 3 && (alive.length < 2 || action < 0.4)) {
        addWorker();
        joins++;
      } else {
        const victim = alive[Math.floor(random() * alive.length)]!;
        const signal = action < 0.7 ? 'SIGKILL' : 'SIGTERM';
        victim.process.kill(signal);
        if (signal === 'SIGKILL') kills++;
        else leaves++;
        note(`worker ${victim.process.pid} ${signal}`);
      }
    }
    if (workers.size === 0) addWorker();
    const total = sent + 1;
    const ends = async () => (await kafka.admin.fetchTopicOffsets(input)).reduce((n, p) => n + Number(p.high), 0);
    expect(await ends()).toBe(total);
    await waitFor('the workers to commit every record', async () => (await kafka.committedTotal(topics.workerGroup, input)) === total, 180_000, 500).catch(async (error: Error) => {
      throw await explain(error);
    });
    // The server has taken in every committed update: each shard's newest snapshot stands at the end of its partition.
    const updateEnds = async () => new Map((await kafka.admin.fetchTopicOffsets(topics.updates)).map((p) => [p.partition, Number(p.high)]));
    await waitFor('the server to take in every update', async () => {
      const [latest, endOf] = await Promise.all([latestSnapshots(kafka.kafka, namespace), updateEnds()]);
      // The end offset also counts the last transaction's marker.
      return [0, 1].every((shard) => (latest.get(shard)?.updatesOffset ?? -1) >= endOf.get(shard)! - 1);
    }, 120_000, 500).catch(async (error: Error) => {
      throw await explain(error);
    });
    for (const worker of workers) worker.process.kill('SIGTERM');
    server.process.kill('SIGTERM');
    const codes = await Promise.all([...workers].map((w) => w.exited));
    expect(codes.every((code) => code === 0), `workers' exit codes ${codes.join(', ')}`).toBe(true);
    expect(await server.exited).toBe(0);

    const report = await auditNamespace({ kafka: kafka.kafka, namespace, inputTopic: input });
    console.error(`[chaos] seed ${seed}: ${total} records, ${joins} joins, ${leaves} leaves, ${kills} SIGKILLs, server SIGKILLed once\n${events.join('\n')}\n${formatAudit(report)}`);
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
  }, 420_000);
});
