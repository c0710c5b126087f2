import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { createOptimizer, type OptimizerSpec } from '../../../pipeline/common/optimizers.js';
import { parseModelSpec } from '../../../pipeline/common/model.js';

/** 30 steps of the server's optimizer and of TF.js' own on the same gradients; the weights must agree. */
function compare(optimizer: OptimizerSpec, reference: tf.Optimizer) {
  const size = 8;
  const gradients = Array.from({ length: 30 }, (_, step) => Float32Array.from({ length: size }, (_, i) => Math.sin(step * 7 + i) * (i + 1)));
  const ours = Float32Array.from({ length: size }, (_, i) => i / 10 - 0.3);
  // A copy: TF.js may keep the array it was given as the tensor's storage.
  const theirs = tf.variable(tf.tensor1d(Float32Array.from(ours)));
  const server = createOptimizer(optimizer);
  const slots = Object.fromEntries(server.slots.map((slot) => [slot, new Float32Array(size)]));
  gradients.forEach((gradient, index) => {
    server.apply(ours, gradient, slots, index + 1, 1);
    tf.tidy(() => reference.applyGradients({ [theirs.name]: tf.tensor1d(Float32Array.from(gradient)) }));
  });
  const expected = theirs.dataSync();
  ours.forEach((w, i) => expect(w, `weight ${i}`).toBeCloseTo(expected[i]!, 4));
  theirs.dispose();
  reference.dispose();
}

const spec = (optimizer: object) => parseModelSpec({ kind: 'linear', features: 1, optimizer }).optimizer;

describe('optimizers', () => {
  it('SGD matches tf.train.sgd', () => compare(spec({ kind: 'sgd', learningRate: 0.05 }), tf.train.sgd(0.05)));
  it('momentum matches tf.train.momentum', () => compare(spec({ kind: 'momentum', learningRate: 0.05, momentum: 0.9 }), tf.train.momentum(0.05, 0.9)));
  it('Adam matches tf.train.adam', () => {
    const adam = spec({ kind: 'adam', learningRate: 0.01 });
    if (adam.kind !== 'adam') throw new Error('not adam');
    compare(adam, tf.train.adam(0.01, adam.beta1, adam.beta2, adam.epsilon));
  });

  it('steps from other weights on a scaled gradient (a worker\'s local step) exactly as in place on the mean', () => {
    const kinds = [
      { kind: 'sgd', learningRate: 0.05 },
      { kind: 'momentum', learningRate: 0.05, momentum: 0.9 },
      { kind: 'adam', learningRate: 0.01 },
      { kind: 'ftrl', learningRate: 0.1, l1: 0.01, l2: 0.001 },
    ];
    for (const kind of kinds) {
      const optimizer = createOptimizer(spec(kind));
      const size = 7;
      const slotsOf = () => Object.fromEntries(optimizer.slots.map((slot) => [slot, new Float32Array(size)]));
      const [inPlace, outOfPlace] = [slotsOf(), slotsOf()];
      let weights = Float32Array.from({ length: size }, (_, i) => i / 10 - 0.3);
      const reference = Float32Array.from(weights);
      for (let step = 1; step <= 5; step++) {
        const sum = Float32Array.from({ length: size }, (_, i) => Math.sin(step * 3 + i) * 40);
        optimizer.apply(reference, Float32Array.from(sum, (g) => g / 32), inPlace, step, 0.5);
        const next = new Float32Array(size).fill(Number.NaN);
        optimizer.apply(next, sum, outOfPlace, step, 0.5, weights, 1 / 32);
        weights = next;
      }
      weights.forEach((w, i) => expect(w, `${kind.kind} weight ${i}`).toBeCloseTo(reference[i]!, 6));
    }
  });
});
