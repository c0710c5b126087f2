import { describe, expect } from 'vitest';
import { parseExperiment } from '../../../pipeline/common/config.js';
import { topicsOf } from '../../../pipeline/common/topics.js';
import { startWorker } from '../../../pipeline/worker/worker.js';
import { codecFor } from '../../../schemas/index.js';
import { waitFor } from '../../support/childProcess.js';
import { latestSnapshots } from '../../support/snapshots.js';
import { startParameterServer } from '../../../pipeline/server/parameterServer.js';
import { decodeTensor } from '../../../schemas/index.js';
import { kafkaTest as test } from '../../support/kafka.js';

describe('worker in sync mode', () => {
  test('computes every update from the snapshot of the one before, and two runs through the parameter server give bit-identical models', async ({ kafka }) => {
    const total = 4_000;
    const input = await kafka.createTopic({ partitions: 1, prefix: 'telemetry' });
    const samples = codecFor('TrainingSample');
    await kafka.produce(input, total, (i) => {
      const features = [Math.sin(i), Math.cos(i * 0.7), Math.sin(i * 0.3)].map(Math.fround);
      return { value: samples.encode({ deviceId: 'd', eventTime: i, features, label: Math.fround(features[0]! - 2 * features[1]! + 0.3), labels: [], weight: 1, attributes: {} }) };
    });

    const run = async (namespace: string) => {
      const config = parseExperiment({
        brokers: kafka.brokers,
        namespace,
        inputTopic: input,
        model: { kind: 'mlp', features: 3, shards: 2, seed: 5, layers: [{ units: 8, activation: 'tanh' }] },
        batchSize: 50,
        sync: true,
        server: { snapshotEveryUpdates: 1 },
      });
      const server = await startParameterServer(config, { log: () => {} });
      server.done.catch((error: unknown) => console.error('[parameter server failed]', error));
      const worker = await startWorker(config, { log: () => {} });
      const topics = topicsOf(namespace);
      try {
        await waitFor('every record applied in both shards', async () => {
          const latest = await latestSnapshots(kafka, namespace);
          return [0, 1].every((shard) => latest.get(shard)?.samplesApplied === total);
        }, 120_000, 200);
      } finally {
        worker.stop();
        server.stop();
        await Promise.all([worker.done, server.done]);
      }
      const updates = codecFor('ParameterUpdate');
      const baseVersions = (await kafka.readCommittedValues(topics.updates)).map((bytes) => {
        const decoded = updates.decode(bytes);
        if (!decoded.ok) throw decoded.error;
        return [decoded.value.shard, decoded.value.baseVersion] as const;
      });
      const latest = await latestSnapshots(kafka, namespace);
      const weights = new Map([...latest.values()].flatMap((snapshot) => snapshot.tensors.map((t) => [t.name, decodeTensor(t)] as const)));
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
