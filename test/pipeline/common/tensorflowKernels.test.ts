import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../../pipeline/common/backend.js';
import { parseModelSpec } from '../../../pipeline/common/model.js';
import { useLeanTensorflowKernels } from '../../../pipeline/common/tensorflowKernels.js';
import { Replica } from '../../../pipeline/worker/replica.js';
import type { TrainingSample } from '../../../schemas/index.js';

/** Where tfjs-node does not load (`npm run setup:tensorflow` could not build it) there are no kernels of its to replace. */
const tfjsNodeLoads = await selectBackend({ backend: 'tensorflow' }).then(
  () => true,
  () => false,
);

/** Deterministic values in [-2, 2), with the special values a kernel must pass through at fixed places. */
function values(count: number, seed: number): Float32Array {
  let state = seed;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    out[i] = (state / 2 ** 31) * 4 - 2;
  }
  const specials = [Number.NaN, 0, -0, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e-38, -1e-38];
  specials.forEach((special, i) => (out[(i * 37) % count] = special));
  return out;
}

/** The bits of a tensor's values (NaN equal to NaN, 0 not equal to −0). */
function bitsOf(tensor: tf.Tensor): number[] {
  return Array.from(new Uint32Array((tensor.dataSync() as Float32Array).slice().buffer));
}

const samples: TrainingSample[] = Array.from({ length: 256 }, (_, i) => ({
  deviceId: `d${i % 7}`,
  eventTime: i,
  features: Array.from(values(16, 1000 + i)),
  label: Math.sin(i),
  labels: [],
  weight: 1 + (i % 3),
  attributes: {},
}));

/** Runs `body` with tfjs-node's own kernels, then with the lean ones. */
function bothWays<T>(body: () => T, restore: () => void): Promise<[T, T]> {
  restore();
  const original = body();
  return useLeanTensorflowKernels().then(() => [original, body()]);
}

describe.runIf(tfjsNodeLoads)("lean kernels for tfjs-node's Step, _FusedMatMul, Cast and Reshape", () => {
  let restore: () => void;
  beforeAll(async () => {
    expect(await selectBackend({ backend: 'tensorflow' })).toBe('tensorflow');
    restore = await useLeanTensorflowKernels();
  });
  afterAll(async () => {
    await useLeanTensorflowKernels();
  });

  it("gives Step's values bit for bit, NaN, ±0 and ±∞ included, and leaves a leaky slope to tfjs-node", async () => {
    const x = tf.tensor2d(values(1_000, 7), [40, 25]);
    const [original, lean] = await bothWays(() => [tf.step(x), tf.step(x, 0.2), tf.getKernel('Step', 'tensorflow')!.kernelFunc], restore);
    expect(lean[2], 'the lean kernel is registered').not.toBe(original[2]);
    const [step, leaky] = lean as [tf.Tensor, tf.Tensor];
    expect(bitsOf(step)).toEqual(bitsOf(original[0] as tf.Tensor));
    expect(Array.from(step.dataSync().slice(0, 1))).toEqual([Number.NaN]);
    expect(bitsOf(leaky)).toEqual(bitsOf(original[1] as tf.Tensor));
    tf.dispose([x, step, leaky, original[0] as tf.Tensor, original[1] as tf.Tensor]);
  });

  it('passes a Cast to the same dtype and a Reshape to the same shape through without an op, and runs the others', async () => {
    const x = tf.tensor2d(values(24, 13), [4, 6]);
    const run = () => {
      const outputs = [tf.cast(x, 'float32'), tf.cast(x, 'int32'), tf.reshape(x, [4, 6]), tf.reshape(x, [6, 4]), tf.reshape(x, [-1, 3]), tf.reshape(x, [24])];
      const kernels = ['Cast', 'Reshape'].map((name) => tf.getKernel(name, 'tensorflow')!.kernelFunc);
      return { outputs, kernels, shapes: outputs.map((t) => t.shape), dtypes: outputs.map((t) => t.dtype) };
    };
    const [original, lean] = await bothWays(run, restore);
    lean.kernels.forEach((kernel, i) => expect(kernel, 'the lean kernel is registered').not.toBe(original.kernels[i]));
    expect(lean.shapes).toEqual(original.shapes);
    expect(lean.dtypes).toEqual(original.dtypes);
    lean.outputs.forEach((t, i) => expect(t.dtype === 'int32' ? Array.from(t.dataSync()) : bitsOf(t)).toEqual(t.dtype === 'int32' ? Array.from(original.outputs[i]!.dataSync()) : bitsOf(original.outputs[i]!)));
    // A pass-through shares the data; disposing of one keeps the other readable.
    const before = tf.memory().numTensors;
    tf.dispose([x, ...original.outputs]);
    expect(bitsOf(lean.outputs[0]!)).toEqual(bitsOf(lean.outputs[2]!));
    tf.dispose(lean.outputs);
    expect(tf.memory().numTensors).toBe(before - 1 - 2 * original.outputs.length);
  });

  it('gives a fused product (transposed or not, with or without bias, linear or relu) and its gradients bit for bit', async () => {
    const cases = [
      { transposeA: false, transposeB: false, bias: true, activation: 'relu' as const },
      { transposeA: false, transposeB: false, bias: false, activation: 'linear' as const },
      { transposeA: true, transposeB: false, bias: true, activation: 'linear' as const },
      { transposeA: false, transposeB: true, bias: false, activation: 'relu' as const },
      { transposeA: true, transposeB: true, bias: true, activation: 'relu' as const },
    ];
    for (const { transposeA, transposeB, bias, activation } of cases) {
      const a = tf.tensor2d(values(64 * 16, 3), transposeA ? [16, 64] : [64, 16]);
      const b = tf.tensor2d(values(16 * 8, 5), transposeB ? [8, 16] : [16, 8]);
      const c = tf.tensor1d(values(8, 11));
      const run = () =>
        tf.tidy(() => {
          const f = (x: tf.Tensor, w: tf.Tensor, v?: tf.Tensor) => tf.fused.matMul({ a: x, b: w, transposeA, transposeB, bias: v, activation });
          const inputs = bias ? [a, b, c] : [a, b];
          const out = f(...(inputs as [tf.Tensor, tf.Tensor, tf.Tensor?]));
          const grads = tf.grads(f)(inputs, tf.onesLike(out));
          return [out, ...grads].map(bitsOf);
        });
      const [original, lean] = await bothWays(run, restore);
      expect(lean, JSON.stringify({ transposeA, transposeB, bias, activation })).toEqual(original);
      tf.dispose([a, b, c]);
    }
  });

  it("leaves a replica's steps bit for bit the same, its gradients and weights, and disposes of every tensor", async () => {
    const spec = parseModelSpec({ kind: 'mlp', features: 16, layers: [{ units: 64 }, { units: 64 }], seed: 3 });
    const train = () => {
      // Through tfjs' tape, which is what runs these kernels (a dense model's step on tfjs-node does not: `denseGradients.ts`).
      const replica = new Replica(spec, { tape: true });
      const steps = Array.from({ length: 5 }, () => replica.gradients(samples).gradients.map(({ values }) => Array.from(values)));
      const weights = replica.weights().map(({ values }) => Array.from(values));
      replica.dispose();
      return { steps, weights };
    };
    const before = tf.memory().numTensors;
    const [original, lean] = await bothWays(train, restore);
    expect(lean.steps).toEqual(original.steps);
    expect(lean.weights).toEqual(original.weights);
    expect(tf.memory().numTensors).toBe(before);
  });
});
