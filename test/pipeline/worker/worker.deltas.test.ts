import { describe, expect } from 'vitest';
import { parseExperiment } from '../../../pipeline/common/config.js';
import { selectBackend } from '../../../pipeline/common/backend.js';
import { Replica } from '../../../pipeline/worker/replica.js';
import { codecFor } from '../../../schemas/index.js';
import { kafkaTest as test } from '../../support/kafka.js';
import { latestSnapshots, trainInProcess } from '../../support/snapshots.js';
import { linearSample as sample } from '../../support/samples.js';
import { windowScores } from '../../../operators/prequential.js';

describe('worker with updates: deltas', () => {
  for (const stepsPerUpdate of [1, 4]) test(`in sync mode, through Kafka and the parameter server, ends at the weights of a plain sequential loop over the same batches (stepsPerUpdate ${stepsPerUpdate})`, async ({ kafka }) => {
    const total = 3_000;
    const batchSize = 50;
    const input = await kafka.createTopic({ partitions: 1, prefix: 'telemetry' });
    const samples = codecFor('TrainingSample');
    await kafka.produce(input, total, (i) => ({ value: samples.encode(sample(i)) }));
    const namespace = `deltas-${input}`;
    const config = parseExperiment({
      brokers: kafka.brokers,
      namespace,
      inputTopic: input,
      model: { kind: 'mlp', features: 3, shards: 2, seed: 5, updates: 'deltas', layers: [{ units: 8, activation: 'tanh' }], optimizer: { kind: 'adam', learningRate: 0.01 } },
      batchSize,
      stepsPerUpdate,
      sync: true,
      server: { snapshotEveryUpdates: 1 },
      // Event time = the sample's index in ms: six windows of 500.
      prequential: { windowMs: 500, maxOutOfOrdernessMs: 0 },
    });
    const served = await trainInProcess(kafka, config, total);

    // The same model, stepped by its own optimizer on the same batches in order, with no Kafka and no server.
    await selectBackend();
    const sequential = new Replica(config.model);
    // Each step stays part of the replica (its deltas, its feature moments): with no server, no snapshot ever holds it.
    for (let start = 0; start < total; start += batchSize) {
      sequential.gradients(Array.from({ length: batchSize }, (_, k) => sample(start + k)));
      sequential.placeLastStep(sequential, input, 0, start + batchSize - 1);
    }
    const untrained = new Replica(config.model);
    const initial = untrained.weights();
    untrained.dispose();
    for (const { name, values } of sequential.weights()) {
      const got = served.get(name)!;
      const moved = Math.max(...values.map((v, i) => Math.abs(v - initial.find((w) => w.name === name)!.values[i]!)));
      expect(moved, `${name} moved`).toBeGreaterThan(0.01);
      values.forEach((v, i) => expect(Math.abs(got[i]! - v), `${name}[${i}]`).toBeLessThan(1e-4));
    }
    sequential.dispose();

    // Every sample was scored before it was trained on, once: shard 0's windows hold them all, and their losses add
    // up to the loss the updates reported; the model learns, so the last window scores far better than the first.
    const shard0 = (await latestSnapshots(kafka, namespace)).get(0)!;
    // One update per stepsPerUpdate batches: the lane cut its batches that much larger.
    expect(shard0.updatesApplied).toBe(total / batchSize / stepsPerUpdate);
    expect(shard0.prequential.map((w) => [w.start, w.samples])).toEqual([0, 500, 1_000, 1_500, 2_000, 2_500].map((start) => [start, 500]));
    const windowLoss = shard0.prequential.reduce((sum, w) => sum + w.lossSum, 0);
    expect(Math.abs(windowLoss - shard0.lossSum) / shard0.lossSum).toBeLessThan(1e-4);
    expect(shard0.eventTimeWatermark).toBe(total - 1);
    const [first, last] = [windowScores(shard0.prequential[0]!), windowScores(shard0.prequential.at(-1)!)];
    console.error(`[deltas] prequential loss per window: ${shard0.prequential.map((w) => (w.lossSum / w.samples).toExponential(2)).join(' → ')}`);
    expect(last.loss).toBeLessThan(first.loss / 3);
    expect(last.rmse ** 2).toBeCloseTo(last.loss, 5);
  }, 300_000);
});
