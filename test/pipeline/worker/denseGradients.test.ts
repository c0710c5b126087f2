import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../../pipeline/common/backend.js';
import { buildModel, parseModelSpec, trainableVariables, type ModelSpec } from '../../../pipeline/common/model.js';
import { DenseGradients } from '../../../pipeline/worker/denseGradients.js';
import { Replica } from '../../../pipeline/worker/replica.js';
import { seededRandom } from '../../../pipeline/commands/simulator.js';
import type { TrainingSample } from '../../../schemas/index.js';

/** Where tfjs-node does not load there is no dense step: every replica takes the tape. */
const tfjsNodeLoads = await selectBackend({ backend: 'tensorflow' }).then(
  () => true,
  () => false,
);

/** `n` samples of `features` features in [-1, 1) (times `scale`), weights 1–3, and labels for `outputs` outputs of the kind the loss takes. */
function samplesFor(spec: ModelSpec, n: number, seed: number, scale = 1): TrainingSample[] {
  const random = seededRandom(seed);
  const classes = spec.outputs > 1 && (spec.kind === 'logistic' || ('outputActivation' in spec && spec.outputActivation === 'softmax'));
  return Array.from({ length: n }, (_, i) => {
    const features = Array.from({ length: spec.features }, () => (random() * 2 - 1) * scale);
    const label = spec.kind === 'logistic' && spec.outputs === 1 ? Number(random() < 0.5) : random() * 2 - 1;
    const labels = spec.outputs === 1 ? [] : classes ? Array.from({ length: spec.outputs }, (_, c) => Number(c === i % spec.outputs)) : Array.from({ length: spec.outputs }, () => (spec.loss === 'binaryCrossentropy' ? Number(random() < 0.5) : random()));
    return { deviceId: `d${i % 5}`, eventTime: i, features, label, labels, weight: 1 + (i % 3), attributes: {} };
  });
}

/** The largest difference between `a` and `b`, relative to the largest magnitude in `a` (at least 1e-3). */
function relativeDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 1e-3;
  let worst = 0;
  for (let i = 0; i < a.length; i++) scale = Math.max(scale, Math.abs(a[i]!));
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst / scale;
}

/**
 * The models, and how close the two must be: 1e-3 of the largest gradient (or weight). Each gradient is a float32 sum
 * over the batch's 64 samples, which the two paths add in different orders (tfjs' MatMul against BatchMatMulV2, whose
 * kernels differ with the CPU's vector width): where the samples' terms cancel, the sums keep fewer digits. On an
 * AVX2 machine the 'every hidden activation' model differed by 4.9e-4 at step 0, and over 30 batches the linear-output
 * variant of it by up to 2.8e-4 (most by under 1e-5); on an AVX-512 machine all by under 1e-4. A wrong derivative or
 * clip (a gradient where the clip holds) is off by far more. Saturated outputs lose more digits in the tape's float32
 * softmax gradient (p·(g − Σ g·p) with g up to 1/ε), and stay within 1e-3 too.
 */
const specs: Array<{ name: string; spec: object; scale?: number }> = [
  { name: 'the bench MLP (ReLU, MSE, scaled inputs)', spec: { kind: 'mlp', features: 16, layers: [{ units: 64 }, { units: 64 }] } },
  { name: 'every hidden activation, a ReLU output', spec: { kind: 'mlp', features: 6, outputs: 3, outputActivation: 'relu', layers: [{ units: 8, activation: 'tanh' }, { units: 8, activation: 'sigmoid' }, { units: 8, activation: 'elu' }, { units: 8, activation: 'linear' }] } },
  { name: 'tanh and ELU outputs', spec: { kind: 'mlp', features: 5, outputs: 2, outputActivation: 'tanh', layers: [{ units: 7, activation: 'elu' }] } },
  { name: 'ELU output', spec: { kind: 'mlp', features: 5, outputs: 2, outputActivation: 'elu', layers: [{ units: 7 }] } },
  { name: 'softmax over 5 classes', spec: { kind: 'mlp', features: 12, outputs: 5, outputActivation: 'softmax', layers: [{ units: 32 }, { units: 16 }] } },
  { name: 'softmax saturated (probabilities clipped)', spec: { kind: 'mlp', features: 12, outputs: 5, outputActivation: 'softmax', normalize: false, layers: [{ units: 32 }] }, scale: 300 },
  { name: 'multi-label sigmoid, binary cross-entropy', spec: { kind: 'mlp', features: 9, outputs: 3, outputActivation: 'sigmoid', loss: 'binaryCrossentropy', layers: [{ units: 10 }] } },
  { name: 'logistic, binary', spec: { kind: 'logistic', features: 7 } },
  { name: 'logistic, binary, saturated', spec: { kind: 'logistic', features: 7, normalize: false }, scale: 500 },
  { name: 'logistic over 4 classes', spec: { kind: 'logistic', features: 7, outputs: 4 } },
  { name: 'linear', spec: { kind: 'linear', features: 16 } },
];

describe.runIf(tfjsNodeLoads)('dense gradients without the tape (tfjs-node)', () => {
  beforeAll(async () => {
    expect(await selectBackend({ backend: 'tensorflow' })).toBe('tensorflow');
  });

  it('takes the dense stacks, and leaves dropout and time series to the tape', () => {
    const takes = (input: object) => {
      const model = buildModel(parseModelSpec(input));
      const taken = DenseGradients.for(parseModelSpec(input), trainableVariables(model)) !== undefined;
      model.dispose();
      return taken;
    };
    for (const { spec } of specs) expect(takes(spec), JSON.stringify(spec)).toBe(true);
    expect(takes({ kind: 'mlp', features: 4, layers: [{ units: 8, dropout: 0.2 }] })).toBe(false);
    expect(takes({ kind: 'timeseries', features: 3, window: 4, units: 8, cell: 'lstm' })).toBe(false);
    expect(takes({ kind: 'timeseries', features: 3, window: 4, units: 8, cell: 'conv1d', kernelSize: 2 })).toBe(false);
  });

  it.each(specs)("gives the tape's gradients, loss and scores, and the same weights after five Adam steps: $name", ({ spec: input, scale }) => {
    const tolerance = 1e-3;
    const spec = parseModelSpec({ ...input, seed: 5, optimizer: { kind: 'adam', learningRate: 0.01 } });
    const before = tf.memory().numTensors;
    const tape = new Replica(spec, { tape: true });
    const dense = new Replica(spec);
    for (let step = 0; step < 5; step++) {
      const batch = samplesFor(spec, 64, 100 + step, scale);
      const [a, b] = [tape.gradients(batch), dense.gradients(batch)];
      a.gradients.forEach((gradient, i) => {
        expect(b.gradients[i]!.name).toBe(gradient.name);
        expect(relativeDifference(gradient.values, b.gradients[i]!.values), `step ${step}, ${gradient.name}`).toBeLessThan(tolerance);
      });
      expect(Math.abs(b.lossSum - a.lossSum) / Math.max(1e-3, Math.abs(a.lossSum))).toBeLessThan(tolerance / 10);
      for (const score of ['loss', 'absError', 'squaredError'] as const) expect(relativeDifference(a.scores![score], b.scores![score]), score).toBeLessThan(tolerance);
      expect(Array.from(b.scores!.correct)).toEqual(Array.from(a.scores!.correct));
    }
    const [tapeWeights, denseWeights] = [tape.weights(), dense.weights()];
    tapeWeights.forEach((w, i) => expect(relativeDifference(w.values, denseWeights[i]!.values), w.name).toBeLessThan(tolerance));
    tape.dispose();
    dense.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('moves the weights at all (a dense step that returned zeros would match a tape that did)', () => {
    const spec = parseModelSpec({ kind: 'mlp', features: 16, layers: [{ units: 8 }], seed: 2, optimizer: { kind: 'sgd', learningRate: 0.1 } });
    const replica = new Replica(spec);
    const start = replica.weights().map(({ values }) => values.slice());
    const { gradients } = replica.gradients(samplesFor(spec, 32, 9));
    for (const gradient of gradients) expect(gradient.values.some((v) => v !== 0), gradient.name).toBe(true);
    expect(replica.weights().every(({ values }, i) => values.some((v, j) => v !== start[i]![j]))).toBe(true);
    replica.dispose();
  });
});
