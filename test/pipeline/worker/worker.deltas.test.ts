import { describe, expect } from 'vitest';
import { parseExperiment } from '../../../pipeline/common/config.js';
import { selectBackend } from '../../../pipeline/common/backend.js';
import { Replica } from '../../../pipeline/worker/replica.js';
import { codecFor, type TrainingSample } from '../../../schemas/index.js';
import { kafkaTest as test } from '../../support/kafka.js';
import { trainInProcess } from '../../support/snapshots.js';

const sample = (i: number): TrainingSample => {
  const features = [Math.sin(i), Math.cos(i * 0.7), Math.sin(i * 0.3)].map(Math.fround);
  return { deviceId: 'd', eventTime: i, features, label: Math.fround(features[0]! - 2 * features[1]! + 0.3), labels: [], weight: 1, attributes: {} };
};

describe('worker with updates: deltas', () => {
  test('in sync mode, through Kafka and the parameter server, ends at the weights of a plain sequential loop over the same batches', async ({ kafka }) => {
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
      sync: true,
      server: { snapshotEveryUpdates: 1 },
    });
    const served = await trainInProcess(kafka, config, total);

    // The same model, stepped by its own optimizer on the same batches in order, with no Kafka and no server.
    await selectBackend({ backend: 'wasm' });
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
  }, 300_000);
});
