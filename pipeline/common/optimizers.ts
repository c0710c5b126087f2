import type { ModelSpec } from './model.js';

/** The optimizer part of a model spec. */
export type OptimizerSpec = ModelSpec['optimizer'];

/**
 * One optimizer, applied by a parameter-server shard (or a worker's local learner) to one variable at a time, with
 * per-variable slots (Adam's moments, FTRL's z and n, …). `scale` multiplies the learning rate (the staleness
 * policy's `scale`).
 */
export interface Optimizer {
  /** The slots kept per variable, saved in snapshots as `<variable>:<slot>`. */
  readonly slots: readonly string[];
  /**
   * One step, in one pass over the weights: writes into `weights` the weights `from` (by default `weights` itself, in
   * place) moved by the gradient `gradient` × `gradientScale` (the mean over the update's samples: a worker passes
   * the sum and 1 / the sample count, and saves a pass).
   */
  apply(weights: Float32Array, gradient: Float32Array, slots: Record<string, Float32Array>, step: number, scale: number, from?: Float32Array, gradientScale?: number): void;
}

/** SGD, momentum, Adam and FTRL-Proximal (McMahan et al., 2013), in float32 like the workers. */
export function createOptimizer(spec: OptimizerSpec): Optimizer {
  switch (spec.kind) {
    case 'sgd':
      return {
        slots: [],
        apply(weights, gradient, _slots, _step, scale, from = weights, gradientScale = 1) {
          const rate = spec.learningRate * scale * gradientScale;
          for (let i = 0; i < weights.length; i++) weights[i] = from[i]! - rate * gradient[i]!;
        },
      };
    case 'momentum':
      return {
        slots: ['velocity'],
        apply(weights, gradient, { velocity }, _step, scale, from = weights, gradientScale = 1) {
          const rate = spec.learningRate * scale;
          for (let i = 0; i < weights.length; i++) {
            velocity![i] = spec.momentum * velocity![i]! + gradient[i]! * gradientScale;
            weights[i] = from[i]! - rate * velocity![i]!;
          }
        },
      };
    case 'adam':
      return {
        slots: ['m', 'v'],
        apply(weights, gradient, { m, v }, step, scale, from = weights, gradientScale = 1) {
          const { beta1, beta2, epsilon } = spec;
          const rate = (spec.learningRate * scale * Math.sqrt(1 - beta2 ** step)) / (1 - beta1 ** step);
          // The moments in locals: a worker's local step runs this over every weight, and reading them back from the
          // float32 slots cost about a fifth of its time.
          const moments = m!;
          const squares = v!;
          for (let i = 0; i < weights.length; i++) {
            const g = gradient[i]! * gradientScale;
            const mi = beta1 * moments[i]! + (1 - beta1) * g;
            const vi = beta2 * squares[i]! + (1 - beta2) * g * g;
            moments[i] = mi;
            squares[i] = vi;
            weights[i] = from[i]! - (rate * mi) / (Math.sqrt(vi) + epsilon);
          }
        },
      };
    case 'ftrl':
      return {
        slots: ['z', 'n'],
        apply(weights, gradient, { z, n }, _step, scale, from = weights, gradientScale = 1) {
          const alpha = spec.learningRate * scale;
          const power = -spec.learningRatePower;
          for (let i = 0; i < weights.length; i++) {
            const g = gradient[i]! * gradientScale;
            const nNew = n![i]! + g * g;
            const sigma = (nNew ** power - n![i]! ** power) / alpha;
            z![i]! += g - sigma * from[i]!;
            n![i] = nNew;
            const zi = z![i]!;
            weights[i] = Math.abs(zi) <= spec.l1 ? 0 : -(zi - Math.sign(zi) * spec.l1) / (nNew ** power / alpha + 2 * spec.l2);
          }
        },
      };
  }
}

/** With `updates: 'deltas'` the server adds each update (a worker's change in weights, scaled by the staleness policy). */
const addDeltas: Optimizer = {
  slots: [],
  apply(weights, delta, _slots, _step, scale, from = weights, gradientScale = 1) {
    const rate = scale * gradientScale;
    for (let i = 0; i < weights.length; i++) weights[i] = from[i]! + rate * delta[i]!;
  },
};

/** The optimizer a parameter-server shard runs: the model's own on gradients, or the sum of deltas. */
export function serverOptimizer(spec: ModelSpec): Optimizer {
  return spec.updates === 'deltas' ? addDeltas : createOptimizer(spec.optimizer);
}
