import { describe, expect } from 'vitest';
import { seededRandom, simulatedReading, type SimulatorOptions } from '../../../pipeline/commands/simulator.js';
import { selectBackend } from '../../../pipeline/common/backend.js';
import { parseExperiment, type ExperimentConfig } from '../../../pipeline/common/config.js';
import { latestSnapshots } from '../../../pipeline/common/modelStore.js';
import { Replica } from '../../../pipeline/worker/replica.js';
import { codecFor, decodeTensor, type TrainingSample } from '../../../schemas/index.js';
import { readTopic } from '../../../pipeline/common/readTopic.js';
import { topicsOf } from '../../../pipeline/common/topics.js';
import { kafkaTest as test, type KafkaFixture } from '../../support/kafka.js';
import { trainInProcess } from '../../support/snapshots.js';

const fleet: SimulatorOptions = { devices: 50, ratePerSecond: 1, seed: 3, dayMs: 60_000, dropoutRate: 0 };
const t0 = 1_790_000_000_000;
const total = 8_000;
type Scales = NonNullable<SimulatorOptions['featureScales']>;
/** Readings 10 ms apart; `constantUntil`: feature 0 is stuck at its first reading (sd 0) before that reading, then varies. */
function readings(featureScales: Scales, count: number, seed: number, from = 0, constantUntil = 0): TrainingSample[] {
  const random = seededRandom(seed);
  let stuck: number | undefined;
  return Array.from({ length: count }, (_, k) => {
    const i = from + k;
    const sample = simulatedReading(i % fleet.devices, t0 + i * 10, random, { ...fleet, featureScales }, t0);
    stuck ??= sample.features[0]!;
    return i < constantUntil ? { ...sample, features: [stuck, ...sample.features.slice(1)] } : sample;
  });
}

function varianceOf(values: readonly number[]): number {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return values.reduce((sum, v) => sum + (v - mean) ** 2, 0) / values.length;
}

async function holdoutMse(kafka: KafkaFixture, config: ExperimentConfig, holdout: readonly TrainingSample[]): Promise<number> {
  await selectBackend();
  const replica = new Replica(config.model);
  for (const snapshot of (await latestSnapshots(kafka.kafka, config.namespace)).values()) replica.applySnapshot(snapshot);
  const mse = replica.lossSum(holdout) / holdout.length;
  replica.dispose();
  return mse;
}

const modelOf = (normalize: boolean) => ({ kind: 'linear', features: 16, normalize, optimizer: { kind: 'adam', learningRate: 0.05 } }) as const;

/**
 * The mean prequential loss (each sample scored before it was trained on) over the samples after the first `from`:
 * from the loss sums of shard 0's snapshots, one per update in sync mode. Steadier than a final model's holdout loss,
 * which moves with its last steps.
 */
async function lossAfter(kafka: KafkaFixture, namespace: string, from: number): Promise<number> {
  const codec = codecFor('ModelSnapshot');
  const points: Array<{ samples: number; lossSum: number }> = [];
  await readTopic(kafka.kafka, topicsOf(namespace).model, (record) => {
    const snapshot = codec.decode(record.value, record);
    if (snapshot.ok) points.push({ samples: snapshot.value.samplesApplied, lossSum: snapshot.value.lossSum });
  }, { partitions: [0] });
  const start = points.find((p) => p.samples >= from)!;
  const end = points[points.length - 1]!;
  return (end.lossSum - start.lossSum) / (end.samples - start.samples);
}

/** Trains a linear model over `samples` in sync mode (a sequential learner), with or without feature scaling. */
async function train(kafka: KafkaFixture, samples: readonly TrainingSample[], normalize: boolean): Promise<ExperimentConfig> {
  const input = await kafka.createTopic({ partitions: 1, prefix: 'skewed' });
  const codec = codecFor('TrainingSample');
  await kafka.produce(input, samples.length, (i) => ({ value: codec.encode(samples[i]!) }));
  const config = parseExperiment({
    brokers: kafka.brokers,
    namespace: `normalize-${input}`,
    inputTopic: input,
    model: modelOf(normalize),
    batchSize: 32,
    sync: true,
    server: { snapshotEveryUpdates: 1 },
  });
  await trainInProcess(kafka, config, samples.length);
  return config;
}

describe('model.normalize', () => {
  test('makes training blind to feature scales: on features scaled 0.01 to 1,000 it learns as on unit features, and far better than without', async ({ kafka }) => {
    // The holdout spans the same simulated time as the training stream, from another seed.
    const skewed = await train(kafka, readings('skewed', total, fleet.seed), true);
    const skewedRaw = await train(kafka, readings('skewed', total, fleet.seed), false);
    const holdout = readings('skewed', 2_000, fleet.seed + 1, total - 2_000);
    const scaled = await holdoutMse(kafka, skewed, holdout);
    const raw = await holdoutMse(kafka, skewedRaw, holdout);
    // The same learner stepped in process (no Kafka: a rebalance under load would re-cut the batches) on the same
    // readings at unit scale and skewed: with scaling it cannot tell them apart.
    const inProcess = (scales: Scales) => {
      const replica = new Replica(skewed.model);
      const stream = readings(scales, total, fleet.seed);
      for (let start = 0; start < total; start += 32) {
        replica.gradients(stream.slice(start, start + 32));
        replica.placeLastStep(replica, scales, 0, start + 31);
      }
      const own = readings(scales, 2_000, fleet.seed + 1, total - 2_000);
      const mse = replica.lossSum(own) / own.length;
      replica.dispose();
      return mse;
    };
    const [unitMse, skewedMse] = [inProcess('unit'), inProcess('skewed')];
    const variance = varianceOf(holdout.map((s) => s.label!));
    const [scaledLate, rawLate] = [await lossAfter(kafka, skewed.namespace, total / 2), await lossAfter(kafka, skewedRaw.namespace, total / 2)];
    console.error(`[normalize] skewed features through Kafka: holdout mse ${scaled.toExponential(3)} scaled, ${raw.toExponential(3)} raw; prequential loss over the second half ${scaledLate.toExponential(3)} scaled, ${rawLate.toExponential(3)} raw; var(y) ${variance.toExponential(3)}. In process, scaled: ${skewedMse.toExponential(3)} skewed, ${unitMse.toExponential(3)} unit`);
    // Scaled, the learner cannot tell skewed features from unit ones (the same model up to float rounding) …
    expect(Math.abs(skewedMse - unitMse) / unitMse).toBeLessThan(0.01);
    // … and through Kafka and the server it learns well, where the same learner on raw features does not.
    expect(scaledLate).toBeLessThan(0.05 * variance);
    expect(rawLate).toBeGreaterThan(5 * scaledLate);
    expect(raw).toBeGreaterThan(5 * scaled);
  }, 300_000);

  test('a feature constant for the first half of the stream stays finite, and the model learns it once it varies', async ({ kafka }) => {
    const config = await train(kafka, readings('skewed', total, fleet.seed, 0, total / 2), true);
    const snapshots = await latestSnapshots(kafka.kafka, config.namespace);
    const moments = snapshots.get(0)!.featureMoments!;
    const [secondHalf, lastQuarter] = [await lossAfter(kafka, config.namespace, total / 2), await lossAfter(kafka, config.namespace, total * 0.75)];
    const variance = varianceOf(readings('skewed', total, fleet.seed).map((s) => s.label!));
    console.error(`[normalize] feature 0 stuck for the first half: prequential loss ${secondHalf.toExponential(3)} over the second half, ${lastQuarter.toExponential(3)} over the last quarter; var(y) ${variance.toExponential(3)}`);
    expect(moments.count).toBe(total);
    expect([...moments.mean, ...moments.m2].every(Number.isFinite)).toBe(true);
    expect([...snapshots.values()].flatMap((s) => s.tensors.flatMap((t) => [...decodeTensor(t)])).every(Number.isFinite)).toBe(true);
    // The first varying readings stand out (their variance is small against the stuck stretch); the model recovers.
    expect(lastQuarter).toBeLessThan(0.1 * variance);
    expect(lastQuarter).toBeLessThan(secondHalf);
  }, 300_000);
});
