import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { describe, expect } from 'vitest';
import { evaluateModel } from '../../../pipeline/commands/evaluate.js';
import { exportModel, registerFileSystem } from '../../../pipeline/commands/export.js';
import { selectBackend } from '../../../pipeline/common/backend.js';
import { parseExperiment } from '../../../pipeline/common/config.js';
import { latestSnapshots } from '../../../pipeline/common/modelStore.js';
import { Replica } from '../../../pipeline/worker/replica.js';
import { codecFor, type TrainingSample } from '../../../schemas/index.js';
import { kafkaTest as test } from '../../support/kafka.js';
import { trainInProcess } from '../../support/snapshots.js';

const classes = 5;
const features = 4;
/** Class c: a Gaussian blob around a centre of its own (well apart), sd 0.5. */
function blob(i: number, seed: number): TrainingSample & { readonly klass: number } {
  let state = (i + 1) * 2_654_435_761 + seed;
  const uniform = () => ((state = (state * 1_103_515_245 + 12_345) % 2 ** 31) + 0.5) / 2 ** 31;
  const normal = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  const klass = i % classes;
  const centre = Array.from({ length: features }, (_, f) => 3 * Math.cos((2 * Math.PI * (klass + f * 0.37)) / classes) * (f % 2 === 0 ? 1 : -1));
  const x = centre.map((c) => Math.fround(c + 0.5 * normal()));
  // Half the samples name their class by index, half one-hot.
  const oneHot = Array.from({ length: classes }, (_, c) => (c === klass ? 1 : 0));
  return { klass, deviceId: `d${i % 7}`, eventTime: i, features: x, label: i % 2 === 0 ? klass : null, labels: i % 2 === 0 ? [] : oneHot, weight: 1, attributes: {} };
}

const argmax = (row: ArrayLike<number>) => Array.from(row).reduce((best, v, i, all) => (v > all[best]! ? i : best), 0);

describe('multi-class', () => {
  for (const model of [
    { kind: 'logistic', features, outputs: classes },
    { kind: 'mlp', features, outputs: classes, layers: [{ units: 16, activation: 'tanh' }], outputActivation: 'softmax' },
  ]) {
    test(`a ${model.kind} softmax over ${classes} classes, labels by index and one-hot, trains through Kafka to ≥ 95% holdout accuracy and exports a model that predicts the same classes`, async ({ kafka }) => {
      const total = 3_000;
      const input = await kafka.createTopic({ partitions: 1, prefix: 'classes' });
      const samples = codecFor('TrainingSample');
      await kafka.produce(input, total, (i) => ({ value: samples.encode(blob(i, 1)) }));
      const config = parseExperiment({ brokers: kafka.brokers, namespace: `classes-${input}`, inputTopic: input, model: { ...model, shards: 2, optimizer: { kind: 'adam', learningRate: 0.05 } }, batchSize: 50, sync: true, server: { snapshotEveryUpdates: 1 } });
      await trainInProcess(kafka, config, total);

      await selectBackend();
      // The served model (the weights' average), as evaluate and export serve it.
      const snapshots = await latestSnapshots(kafka.kafka, config.namespace);
      const replica = Replica.served(config.model, snapshots.values());
      const holdout = Array.from({ length: 1_000 }, (_, i) => blob(i, 99));
      const { predicted: flat } = replica.predict(holdout);
      const predicted = holdout.map((_, i) => Array.from(flat.subarray(i * classes, (i + 1) * classes)));
      const accuracy = holdout.filter((s, i) => argmax(predicted[i]!) === s.klass).length / holdout.length;
      expect(accuracy).toBeGreaterThanOrEqual(0.95);
      // Mean log-loss of the true class: well below a uniform guess's ln 5 = 1.61.
      const logLoss = -holdout.reduce((sum, s, i) => sum + Math.log(Math.max(predicted[i]![s.klass]!, 1e-7)), 0) / holdout.length;
      expect(logLoss).toBeLessThan(0.3);
      // streamgrad evaluate, on the same holdout written to a topic, finds the same figures.
      const holdoutTopic = await kafka.createTopic({ partitions: 2, prefix: 'holdout' });
      await kafka.produce(holdoutTopic, holdout.length, (i) => ({ value: samples.encode(holdout[i]!) }));
      const evaluation = await evaluateModel(kafka.kafka, config, holdoutTopic);
      expect(evaluation).toMatchObject({ samples: holdout.length, skipped: {}, accuracy });
      expect(evaluation.logLoss).toBeCloseTo(logLoss, 4);
      expect(evaluation.mae).toBeUndefined();

      const out = mkdtempSync(join(tmpdir(), 'streamgrad-classes-'));
      const { modelJson } = await exportModel(config.model, snapshots, out);
      registerFileSystem();
      const exported = await tf.loadLayersModel(pathToFileURL(modelJson).href);
      // The exported model takes raw features: the input scaling is folded into its first layer.
      const exportedPredictions = tf.tidy(() => (exported.predict(tf.tensor2d(holdout.map((s) => s.features))) as tf.Tensor).arraySync() as number[][]);
      expect(exportedPredictions.map(argmax)).toEqual(predicted.map(argmax));
      exportedPredictions.forEach((row, i) => row.forEach((p, c) => expect(p).toBeCloseTo(predicted[i]![c]!, 4)));
      exported.dispose();
      replica.dispose();
    }, 300_000);
  }
});
