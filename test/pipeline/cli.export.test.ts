import { randomUUID } from 'node:crypto';
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { quantizationErrorBound } from '../../pipeline/commands/export.js';
import { selectBackend } from '../../pipeline/common/backend.js';
import { parseExperiment } from '../../pipeline/common/config.js';
import { Replica } from '../../pipeline/worker/replica.js';
import { cliOutput, spawnTs } from '../support/childProcess.js';
import { kafkaTest, testBrokers, type KafkaFixture } from '../support/kafka.js';
import { latestSnapshots, writeExperimentFile } from '../support/snapshots.js';

const cli = (args: string[]) => cliOutput(args, { KAFKA_BROKERS: testBrokers().join(',') });

/** Runs the exported model in a fresh Node process with the standard TF.js loader. */
async function predictInFreshProcess(modelJson: string, inputs: number[][]): Promise<{ predictions: number[]; weights: Array<{ name: string; values: number[] }> }> {
  const inputsFile = join(mkdtempSync(join(tmpdir(), 'streamgrad-inputs-')), 'inputs.json');
  writeFileSync(inputsFile, JSON.stringify(inputs));
  const child = spawnTs(new URL('./fixtures/predictExported.ts', import.meta.url), [modelJson, inputsFile]);
  expect(await child.exited).toBe(0);
  return JSON.parse(child.lines.join('')) as { predictions: number[]; weights: Array<{ name: string; values: number[] }> };
}

/** The served model of the namespace: the averages of the weights the server keeps (`model.averageDecay`, on by default). */
async function servedModel(kafka: KafkaFixture, namespace: string, spec: object): Promise<Replica> {
  await selectBackend();
  return Replica.served(parseExperiment({ namespace, inputTopic: 'unused', model: spec }).model, (await latestSnapshots(kafka, namespace)).values());
}

describe('streamgrad export', () => {
  kafkaTest('writes a LayersModel that a fresh process loads and that predicts as the server\'s served (averaged) weights do; uint8 within its bound at ≤ 30% of the size', async ({ kafka }) => {
    const spec = { kind: 'mlp', features: 16, shards: 2, layers: [{ units: 24, activation: 'tanh' }, { units: 8, activation: 'relu' }], optimizer: { kind: 'adam', learningRate: 0.01 } };
    const inputTopic = `export-input-${randomUUID().slice(0, 8)}`;
    const file = writeExperimentFile({ namespace: `live-${randomUUID().slice(0, 8)}`, inputTopic, inputPartitions: 4, model: spec, batchSize: 128, simulator: { devices: 30, ratePerSecond: 20_000, seed: 5, dropoutRate: 0.01 } });
    await cli(['simulate', '--config', file, '--count', '4000']);
    const { namespace } = JSON.parse((await cli(['replay', '--config', file, '--json'])).join('')) as { namespace: string };

    const out = mkdtempSync(join(tmpdir(), 'streamgrad-export-'));
    const [modelJson] = await cli(['export', '--config', file, '--namespace', namespace, '--out', join(out, 'fp32')]);
    const [quantizedJson] = await cli(['export', '--config', file, '--namespace', namespace, '--out', join(out, 'uint8'), '--quantize', 'uint8']);
    const [halfJson] = await cli(['export', '--config', file, '--namespace', namespace, '--out', join(out, 'float16'), '--quantize', 'float16']);
    expect(modelJson).toBe(join(out, 'fp32', 'model.json'));

    const random = (i: number) => Math.sin(i * 12.9898) * 1.5;
    const inputs = Array.from({ length: 32 }, (_, row) => Array.from({ length: 16 }, (_, col) => random(row * 16 + col + 1)));
    const replica = await servedModel(kafka, namespace, spec);
    // The server's model scales raw features by its merged moments (normalize is on by default); the exported model
    // takes raw features, with the scaling folded into its first layer.
    const expected = replica.predict(inputs.map((features) => ({ deviceId: 'd', eventTime: 0, features, label: 0, labels: [], weight: 1, attributes: {} }))).predicted;
    expect((await latestSnapshots(kafka, namespace)).get(0)!.featureMoments?.count).toBeGreaterThan(3_000);
    replica.foldScaling();
    const serverWeights = new Map(replica.weights().map((w) => [w.name, w.values] as const));
    replica.dispose();
    // What is exported is the average, not the weights the workers train on.
    const trained = new Replica(parseExperiment({ namespace, inputTopic: 'unused', model: spec }).model);
    for (const snapshot of (await latestSnapshots(kafka, namespace)).values()) trained.applySnapshot(snapshot);
    trained.foldScaling();
    expect(trained.weights().some(({ name, values }) => values.some((v, i) => v !== serverWeights.get(name)![i]))).toBe(true);
    trained.dispose();

    const exact = await predictInFreshProcess(modelJson!, inputs);
    exact.predictions.forEach((p, i) => expect(Math.abs(p - expected[i]!)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(expected[i]!))));
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
