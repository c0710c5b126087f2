import { describe, expect } from 'vitest';
import { parseWorkerConfig } from '../../pipeline/config.js';
import { Replica } from '../../pipeline/replica.js';
import { topicsOf } from '../../pipeline/topics.js';
import { startWorker } from '../../pipeline/worker.js';
import { codecFor } from '../../schemas/index.js';
import { waitFor } from '../support/childProcess.js';
import { startTestFold } from '../support/foldUpdates.js';
import { kafkaTest as test } from '../support/kafka.js';

const truth = { w: [1.5, -2, 0.5, 3], b: 0.7 };

describe('worker', () => {
  test('learns a known linear model from a real topic through a worker and an update fold, dead-lettering bad records', async ({ kafka }) => {
    const total = 20_000;
    const bad = new Set([17, 4_000, 12_345]);
    const input = await kafka.createTopic({ partitions: 2, prefix: 'telemetry' });
    const namespace = `ns-${input}`;
    const samples = codecFor('TrainingSample');
    let state = 11;
    const random = () => ((state = (state * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31) * 2 - 1;
    await kafka.produce(input, total, (i) => {
      if (bad.has(i)) return { key: `d${i % 9}`, value: i === 17 ? Buffer.from('not avro') : samples.encode({ deviceId: 'd', eventTime: i, features: [Number.NaN, 0, 0, 0], label: 0, labels: [], weight: 1, attributes: {} }) };
      const features = [random(), random(), random(), random()].map(Math.fround);
      const label = Math.fround(features.reduce((sum, x, k) => sum + x * truth.w[k]!, truth.b) + 0.01 * random());
      return { key: `d${i % 9}`, value: samples.encode({ deviceId: `d${i % 9}`, eventTime: i, features, label, labels: [], weight: 1, attributes: {} }) };
    });

    const config = parseWorkerConfig({
      brokers: kafka.brokers,
      namespace,
      inputTopic: input,
      model: { kind: 'linear', features: 4, shards: 2, optimizer: { kind: 'sgd', learningRate: 0.1 } },
      batchSize: 64,
      checkpointIntervalMs: 100,
      maxInFlightUpdates: 4,
    });
    const worker = await startWorker(config, { log: () => {} });
    const foldReplica = new Replica(config.model);
    const fold = await startTestFold({ brokers: kafka.brokers, namespace, replica: foldReplica, learningRate: 0.1 });
    try {
      const topics = topicsOf(namespace);
      await waitFor('every input record to be committed', async () => (await kafka.committedTotal(topics.workerGroup, input)) === total, 180_000, 250);
      worker.stop();
      await worker.done;
      const updatesWritten = (await kafka.readCommitted(topics.updates)).length;
      await waitFor('the fold to apply every committed update', () => fold.applied() === updatesWritten, 60_000);

      const learned = fold.weights();
      const kernel = learned.get('linear/kernel')!;
      const bias = learned.get('linear/bias')![0]!;
      truth.w.forEach((w, k) => expect(Math.abs(kernel[k]! - w) / Math.abs(w), `w${k}`).toBeLessThan(0.02));
      expect(Math.abs(bias - truth.b) / truth.b).toBeLessThan(0.02);

      const letters = await kafka.readCommitted(topics.deadLetters);
      expect(letters).toHaveLength(bad.size);
      console.error(`[worker] learned w=${[...kernel].map((v) => v.toFixed(3)).join(',')} b=${bias.toFixed(3)}; ${fold.applied()} updates folded`);
    } finally {
      worker.stop();
      await worker.done.catch(() => {});
      await fold.stop();
      foldReplica.dispose();
    }
  }, 240_000);
});
