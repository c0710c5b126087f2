import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { parseExperiment } from '../../pipeline/config.js';
import { parseModelSpec } from '../../pipeline/model.js';
import { startParameterServer } from '../../pipeline/parameterServer.js';
import { percentile } from '../../pipeline/percentile.js';
import { Replica } from '../../pipeline/replica.js';
import { ShardState } from '../../pipeline/shardState.js';
import { startWorker } from '../../pipeline/worker.js';
import { codecFor, encodeTensor, type ParameterUpdate } from '../../schemas/index.js';
import { median, rates } from './stats.js';

/** Updates/s one shard applies (decode + Adam step) for the 16-64-64-1 MLP, all its variables on one shard, no Kafka. */
export function measurePsApplyRate(options: { quick: boolean }): { psApplyRate: number } {
  const spec = parseModelSpec({ kind: 'mlp', features: 16, layers: [{ units: 64 }, { units: 64 }], optimizer: { kind: 'adam', learningRate: 0.001 } });
  const replica = new Replica(spec);
  const weights = replica.weights();
  replica.dispose();
  const state = ShardState.initial('bench', 0, spec, weights);
  const codec = codecFor('ParameterUpdate');
  const update: ParameterUpdate = {
    namespace: 'bench', shard: 0, workerId: 'w', baseVersion: 0, sampleCount: 256, lossSum: 1, deadLettered: 0,
    offsets: [{ topic: 't', partition: 0, firstOffset: 0, lastOffset: 255 }], firstAppendTime: 0, lastAppendTime: 0, createdAt: 0,
    tensors: weights.map((w) => encodeTensor(w.name, w.shape, w.values.map((v) => v * 0.01), 'FP32')),
  };
  const bytes = codec.encode(update);
  const perRun = options.quick ? 500 : 2_000;
  const body = () => {
    for (let i = 0; i < perRun; i++) {
      const decoded = codec.decode(bytes);
      if (decoded.ok) state.take(decoded.value, { policy: 'apply', bound: 1_000_000 }, undefined);
    }
  };
  rates(1, perRun, body);
  return { psApplyRate: median(rates(options.quick ? 3 : 7, perRun, body)) };
}

/**
 * Freshness end to end: a producer at `rate` samples/s into a topic, one worker
 * and one server (16-64-64-1 MLP, 1 shard); per update, ms from its oldest
 * sample's append until the commit of the first snapshot that includes it.
 */
export async function measureFreshness(brokers: string, rate: number, options: { quick: boolean }): Promise<{ freshnessP50Ms: number; freshnessP99Ms: number; freshnessRate: number; freshnessUpdates: number }> {
  const kafka = new Kafka({ clientId: 'streamgrad-bench-freshness', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const topic = `bench-fresh-${randomUUID().slice(0, 8)}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 2 }] });
  const config = parseExperiment({
    brokers: brokers.split(','),
    namespace: `bench-fresh-${randomUUID().slice(0, 8)}`,
    inputTopic: topic,
    model: { kind: 'mlp', features: 16, shards: 1, layers: [{ units: 64 }, { units: 64 }] },
    batchSize: 256,
    checkpointIntervalMs: 100,
    server: { snapshotEveryUpdates: 10, snapshotIntervalMs: 100 },
  });
  const server = await startParameterServer(config, { log: () => {} });
  const worker = await startWorker(config, { log: () => {} });
  const samples: number[] = [];
  const warmUpUntil = Date.now() + 3_000;
  server.freshness.subscribe((ms) => {
    if (Date.now() > warmUpUntil) samples.push(ms);
  });
  const codec = codecFor('TrainingSample');
  const producer = kafka.producer();
  await producer.connect();
  const seconds = options.quick ? 10 : 30;
  const tick = 50;
  const perTick = Math.round((rate * tick) / 1000);
  const started = Date.now();
  let sent = 0;
  while (Date.now() - started < seconds * 1000) {
    const messages = Array.from({ length: perTick }, (_, k) => {
      const i = sent + k;
      return { key: `d${i % 100}`, value: codec.encode({ deviceId: `d${i % 100}`, eventTime: Date.now(), features: Array.from({ length: 16 }, (_, f) => Math.fround(Math.sin(i + f))), label: Math.fround(Math.cos(i)), labels: [], weight: 1, attributes: {} }) };
    });
    await producer.send({ topic, messages });
    sent += perTick;
    const next = started + (sent / perTick) * tick;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - Date.now())));
  }
  const achieved = (sent / (Date.now() - started)) * 1000;
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  worker.stop();
  server.stop();
  await Promise.all([worker.done, server.done, producer.disconnect()]);
  await admin.deleteTopics({ topics: [topic] });
  await admin.disconnect();
  return { freshnessP50Ms: percentile(samples, 50), freshnessP99Ms: percentile(samples, 99), freshnessRate: achieved, freshnessUpdates: samples.length };
}
