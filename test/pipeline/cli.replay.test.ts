import { randomUUID } from 'node:crypto';
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { describe, expect } from 'vitest';
import { quantizationErrorBound } from '../../pipeline/commands/export.js';
import { selectBackend } from '../../pipeline/common/backend.js';
import { parseExperiment } from '../../pipeline/common/config.js';
import { Replica } from '../../pipeline/worker/replica.js';
import { decodeTensor } from '../../schemas/index.js';
import { runCli, spawnTs } from '../support/childProcess.js';
import { kafkaTest, testBrokers, type KafkaFixture } from '../support/kafka.js';
import { latestSnapshots, writeExperimentFile } from '../support/snapshots.js';

const env = () => ({ KAFKA_BROKERS: testBrokers().join(',') });

interface Summary {
  namespace: string;
  samples: number;
  deadLettered: number;
  finalLoss: number;
  versions: number[];
  hash: string;
}

function experiment(inputTopic: string, model: object = { kind: 'linear', features: 16, shards: 2, optimizer: { kind: 'adam', learningRate: 0.05 } }) {
  return { namespace: `live-${randomUUID().slice(0, 8)}`, inputTopic, inputPartitions: 4, model, batchSize: 128, simulator: { devices: 30, ratePerSecond: 20_000, seed: 5, dropoutRate: 0.01 } };
}

async function cli(args: string[]): Promise<string[]> {
  const { code, stdout, stderr } = await runCli(args, env());
  expect(code, `streamgrad ${args.join(' ')}\n${stderr.join('\n')}`).toBe(0);
  return stdout;
}

const replay = async (file: string, ...args: string[]): Promise<Summary> => JSON.parse((await cli(['replay', '--config', file, '--json', ...args])).join('')) as Summary;

describe('streamgrad replay', () => {
  kafkaTest('sync replays of a range give identical hashes; another learning rate another; the live namespace is untouched; ranges by time and offsets', async ({ kafka }) => {
    const inputTopic = `replay-input-${randomUUID().slice(0, 8)}`;
    // An MLP and 256-sample batches, as in examples/iot.yaml: slow enough steps that a lane which did not wait for
    // its last update would hand the next partition weights without it.
    const mlp = (learningRate: number) => ({ kind: 'mlp', features: 16, shards: 2, layers: [{ units: 32, activation: 'tanh' }], optimizer: { kind: 'adam', learningRate } });
    const live = { ...experiment(inputTopic, mlp(0.01)), batchSize: 256 };
    const file = writeExperimentFile(live);
    await cli(['simulate', '--config', file, '--count', '3000']);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const middle = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 50));
    await cli(['simulate', '--config', file, '--count', '3000', '--seed', '6']);

    // The "live" namespace: trained once; a replay must never write to it.
    const trained = await replay(file, '--namespace', live.namespace);
    expect(trained.samples + trained.deadLettered).toBe(6_000);
    const liveEnds = await kafka.admin.fetchTopicOffsets(`${live.namespace}.model`);

    const first = await replay(file, '--sync');
    const second = await replay(file, '--sync');
    expect(first.namespace).not.toBe(second.namespace);
    expect(first.samples + first.deadLettered).toBe(6_000);
    expect(first.deadLettered).toBeGreaterThan(0);
    expect(second.hash).toBe(first.hash);
    // Versions also count the dead-letter updates, which are cut by time: they may differ by one or two. Weights may not.
    expect(second.samples).toBe(first.samples);
    expect(first.finalLoss).toBeLessThan(0.5);

    const slower = writeExperimentFile({ ...live, model: mlp(0.003) });
    const other = await replay(slower, '--sync');
    expect(other.samples).toBe(first.samples);
    expect(other.hash).not.toBe(first.hash);

    const byTime = await replay(file, '--from', new Date(middle).toISOString());
    expect(byTime.samples + byTime.deadLettered).toBe(3_000);
    const byTimeEnd = await replay(file, '--to', String(middle));
    expect(byTimeEnd.samples + byTimeEnd.deadLettered).toBe(3_000);
    const byOffsets = await replay(file, '--from-offsets', '0:100', '--to-offsets', '0:1100,1:400,2:0,3:0');
    expect(byOffsets.samples + byOffsets.deadLettered).toBe(1_000 + 400);

    expect(await kafka.admin.fetchTopicOffsets(`${live.namespace}.model`)).toEqual(liveEnds);
    const again = await runCli(['replay', '--config', file, '--namespace', live.namespace], env());
    expect(again.code).toBe(2);
    expect(again.stderr).toEqual([expect.stringMatching(new RegExp(`namespace '${live.namespace}' already exists`))]);
    expect(await kafka.admin.fetchTopicOffsets(`${live.namespace}.model`)).toEqual(liveEnds);
  }, 300_000);
});

/** Runs the exported model in a fresh Node process with the standard TF.js loader. */
async function predictInFreshProcess(modelJson: string, inputs: number[][]): Promise<{ predictions: number[]; weights: Array<{ name: string; values: number[] }> }> {
  const inputsFile = join(mkdtempSync(join(tmpdir(), 'streamgrad-inputs-')), 'inputs.json');
  writeFileSync(inputsFile, JSON.stringify(inputs));
  const child = spawnTs(new URL('./fixtures/predictExported.ts', import.meta.url), [modelJson, inputsFile]);
  expect(await child.exited).toBe(0);
  return JSON.parse(child.lines.join('')) as { predictions: number[]; weights: Array<{ name: string; values: number[] }> };
}

async function serverModel(kafka: KafkaFixture, namespace: string, spec: object): Promise<Replica> {
  await selectBackend({ backend: 'wasm' });
  const replica = new Replica(parseExperiment({ namespace, inputTopic: 'unused', model: spec }).model);
  for (const snapshot of (await latestSnapshots(kafka, namespace)).values()) replica.applySnapshot(snapshot);
  return replica;
}

describe('streamgrad export', () => {
  kafkaTest('writes a LayersModel that a fresh process loads and that predicts as the server\'s weights do; uint8 within its bound at ≤ 30% of the size', async ({ kafka }) => {
    const spec = { kind: 'mlp', features: 16, shards: 2, layers: [{ units: 24, activation: 'tanh' }, { units: 8, activation: 'relu' }], optimizer: { kind: 'adam', learningRate: 0.01 } };
    const config = experiment(`export-input-${randomUUID().slice(0, 8)}`, spec);
    const file = writeExperimentFile(config);
    await cli(['simulate', '--config', file, '--count', '4000']);
    const { namespace } = await replay(file);

    const out = mkdtempSync(join(tmpdir(), 'streamgrad-export-'));
    const [modelJson] = await cli(['export', '--config', file, '--namespace', namespace, '--out', join(out, 'fp32')]);
    const [quantizedJson] = await cli(['export', '--config', file, '--namespace', namespace, '--out', join(out, 'uint8'), '--quantize', 'uint8']);
    const [halfJson] = await cli(['export', '--config', file, '--namespace', namespace, '--out', join(out, 'float16'), '--quantize', 'float16']);
    expect(modelJson).toBe(join(out, 'fp32', 'model.json'));

    const random = (i: number) => Math.sin(i * 12.9898) * 1.5;
    const inputs = Array.from({ length: 32 }, (_, row) => Array.from({ length: 16 }, (_, col) => random(row * 16 + col + 1)));
    const replica = await serverModel(kafka, namespace, spec);
    const expected = Array.from((replica.model.predict(tf.tensor2d(inputs)) as tf.Tensor).dataSync());
    const snapshots = await latestSnapshots(kafka, namespace);
    const serverWeights = new Map([...snapshots.values()].flatMap((s) => s.tensors.map((t) => [t.name, decodeTensor(t)] as const)));
    replica.dispose();

    const exact = await predictInFreshProcess(modelJson!, inputs);
    exact.predictions.forEach((p, i) => expect(Math.abs(p - expected[i]!)).toBeLessThanOrEqual(1e-6));
    for (const { name, values } of exact.weights) expect(values).toEqual(Array.from(serverWeights.get(name)!));

    const quantized = await predictInFreshProcess(quantizedJson!, inputs);
    for (const { name, values } of quantized.weights) {
      const original = serverWeights.get(name)!;
      const bound = quantizationErrorBound.uint8(Math.min(...original), Math.max(...original));
      values.forEach((v, i) => expect(Math.abs(v - original[i]!), `${name}[${i}]`).toBeLessThanOrEqual(bound));
    }
    expect(quantized.predictions.every(Number.isFinite)).toBe(true);
    const size = (json: string) => statSync(join(json, '..', 'weights.bin')).size;
    expect(size(quantizedJson!)).toBeLessThanOrEqual(0.3 * size(modelJson!));

    const half = await predictInFreshProcess(halfJson!, inputs);
    for (const { name, values } of half.weights) {
      const original = serverWeights.get(name)!;
      values.forEach((v, i) => expect(Math.abs(v - original[i]!), `${name}[${i}]`).toBeLessThanOrEqual(quantizationErrorBound.float16(original[i]!)));
    }
    expect(size(halfJson!)).toBe(size(modelJson!) / 2);
  }, 180_000);
});
