import { describe, expect } from 'vitest';
import { parseExperiment } from '../../../pipeline/common/config.js';
import { topicsOf } from '../../../pipeline/common/topics.js';
import { codecFor } from '../../../schemas/index.js';
import { trainInProcess } from '../../support/snapshots.js';
import { linearSample } from '../../support/samples.js';
import { kafkaTest as test } from '../../support/kafka.js';

describe('worker in sync mode', () => {
  for (const updates of ['gradients', 'deltas'] as const) test(`with ${updates}, computes every update from the snapshot of the one before, and two runs through the parameter server give bit-identical models`, async ({ kafka }) => {
    const total = 4_000;
    const input = await kafka.createTopic({ partitions: 1, prefix: 'telemetry' });
    const samples = codecFor('TrainingSample');
    await kafka.produce(input, total, (i) => ({ value: samples.encode(linearSample(i)) }));

    const run = async (namespace: string) => {
      const config = parseExperiment({
        brokers: kafka.brokers,
        namespace,
        inputTopic: input,
        model: { kind: 'mlp', features: 3, shards: 2, seed: 5, updates, layers: [{ units: 8, activation: 'tanh' }] },
        batchSize: 50,
        sync: true,
        server: { snapshotEveryUpdates: 1 },
      });
      const weights = await trainInProcess(kafka, config, total);
      const topics = topicsOf(namespace);
      const updateCodec = codecFor('ParameterUpdate');
      const baseVersions = (await kafka.readCommittedValues(topics.updates)).map((bytes) => {
        const decoded = updateCodec.decode(bytes);
        if (!decoded.ok) throw decoded.error;
        return [decoded.value.shard, decoded.value.baseVersion] as const;
      });
      return { weights, baseVersions };
    };

    const first = await run(`sync-a-${input}`);
    const second = await run(`sync-b-${input}`);
    for (const shard of [0, 1]) {
      // The i-th update of a shard was computed on the weights of version i: nothing stale.
      expect(first.baseVersions.filter(([s]) => s === shard).map(([, v]) => v)).toEqual(Array.from({ length: total / 50 }, (_, i) => i));
    }
    for (const [name, values] of first.weights) {
      expect(Buffer.from(second.weights.get(name)!.buffer).equals(Buffer.from(values.buffer)), name).toBe(true);
    }
  }, 300_000);
});
