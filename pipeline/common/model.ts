import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { validateOptions } from '../../operators/validateOptions.js';

const activation = z.enum(['linear', 'relu', 'tanh', 'sigmoid', 'elu']);
/** An output layer may also be a softmax over the classes (categorical cross-entropy by default). */
const outputActivation = z.enum(['linear', 'relu', 'tanh', 'sigmoid', 'elu', 'softmax']);

const optimizer = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('sgd'), learningRate: z.number().positive() }),
  z.object({ kind: z.literal('momentum'), learningRate: z.number().positive(), momentum: z.number().min(0).max(1).default(0.9) }),
  z.object({
    kind: z.literal('adam'),
    learningRate: z.number().positive(),
    beta1: z.number().min(0).max(1).default(0.9),
    beta2: z.number().min(0).max(1).default(0.999),
    epsilon: z.number().positive().default(1e-7),
  }),
  z.object({
    kind: z.literal('ftrl'),
    learningRate: z.number().positive(),
    learningRatePower: z.number().max(0).default(-0.5),
    l1: z.number().nonnegative().default(0),
    l2: z.number().nonnegative().default(0),
  }),
]);

const common = {
  /** Input features per sample (per time step, for time series). */
  features: z.number().int().positive(),
  /** Model outputs: 1 for regression and binary labels, the class count for categorical. */
  outputs: z.number().int().positive().default(1),
  loss: z.enum(['mse', 'binaryCrossentropy', 'categoricalCrossentropy']).optional(),
  optimizer: optimizer.default({ kind: 'sgd', learningRate: 0.01 }),
  /**
   * What workers send. `gradients`: each batch's gradient, on which the server steps the optimizer. `deltas`: each
   * worker steps the optimizer on its own replica (one sequential learner over its lanes) and sends the change in
   * weights, which the server adds; a worker's replica is the newest snapshot plus its own deltas not yet in it (see `localSteps`).
   */
  updates: z.enum(['gradients', 'deltas']).default('deltas'),
  /**
   * Scale each input feature online by its running mean and standard deviation over every sample trained on
   * (merged exactly by the parameter server, carried in snapshots, folded into exported models).
   */
  normalize: z.boolean().default(true),
  /**
   * The served model (`export`, `evaluate`, the demo's model) is an exponential moving average of the weights over
   * the shard's updates with this decay per update (about the last 1 / (1 − decay) updates); the workers train on the
   * weights themselves. 0 serves the weights as they are.
   */
  averageDecay: z.number().min(0).lt(1).default(0.99),
  /**
   * With `deltas` and several workers: `lower` the momentum of each worker's optimizer (Adam's beta1, momentum's
   * momentum) by the momentum that the other workers' updates its steps miss add (see `worker/asyncMomentum.ts`);
   * `keep` it as given; `auto` (the default): `lower` while the worker's updates hold one local step each (at
   * `stepsPerUpdate: 1`, or on a live stream whose batches `batchMaxWaitMs` cuts short), `keep` while they hold
   * several (measured both ways: README, *Momentum under asynchrony*). One worker keeps it either way.
   */
  asyncMomentum: z.enum(['auto', 'lower', 'keep']).default('auto'),
  /**
   * With `deltas` and several workers: `scale` each worker's local learning rate by 1 / (1 + τ), τ being the other
   * workers' updates its steps miss (the estimate `asyncMomentum` uses). At a high learning rate two workers stepping
   * on each other's stale weights overshoot together, and a converged model's loss jumps back up for a while; `scale`
   * stops that, but learns τ times slower, so it is off (`keep`) by default. One worker (τ = 0) and every replay train
   * with the spec's rate either way.
   */
  asyncStepSize: z.enum(['scale', 'keep']).default('keep'),
  /**
   * With `deltas` and several workers: local steps with model averaging. Each worker trains its replica on its own
   * for this many steps before it takes in the server's newest weights (plus its own updates not in them yet), and
   * its updates count in proportion to its share of the input's partitions, so the server's weights are the workers'
   * average; its learning rate is scaled by 1 / √share (the average of n workers' steps is about √n times less
   * noisy), so that two workers learn about as far per sample as one. Two optimizers stepping in turn on one set of
   * weights make each worker's Adam see only every other point of the path and keep a period-2 wobble going, whatever
   * the staleness (BENCHMARKS.md, *Two workers on a live stream: the cause, and local steps with model averaging*).
   * 1 turns the averaging off: every update counts in full and snapshots are taken in at once. One worker,
   * `run --sync` and replays are not affected.
   */
  localSteps: z.number().int().positive().default(12),
  /** Seeds the initial weights: the same spec and seed give the same model. */
  seed: z.number().int().nonnegative().default(42),
  /** Parameter-server shards the variables are split over. */
  shards: z.number().int().positive().default(1),
};

/**
 * A model specification, validated when the pipeline is built. Kinds:
 * `linear` and `logistic` regression, an `mlp` of dense layers, and a
 * `timeseries` model (Conv1D or LSTM) over a window of one device's readings.
 */
export const modelSpecSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('linear'), ...common }),
  z.object({ kind: z.literal('logistic'), ...common }),
  z.object({
    kind: z.literal('mlp'),
    ...common,
    layers: z.array(z.object({ units: z.number().int().positive(), activation: activation.default('relu'), dropout: z.number().min(0).lt(1).default(0) })).min(1),
    outputActivation: outputActivation.default('linear'),
  }),
  z.object({
    kind: z.literal('timeseries'),
    ...common,
    /** Readings per window, oldest first. */
    window: z.number().int().min(2),
    cell: z.enum(['conv1d', 'lstm']),
    units: z.number().int().positive().default(16),
    kernelSize: z.number().int().positive().default(3),
    outputActivation: outputActivation.default('linear'),
  }),
]);

export type ModelSpecInput = z.input<typeof modelSpecSchema>;
export type ModelSpec = z.output<typeof modelSpecSchema>;
export type LossName = NonNullable<ModelSpec['loss']>;

/** Validates a model spec; the error names the bad field, e.g. `model.layers.0.units`. */
export function parseModelSpec(spec: unknown): ModelSpec {
  const parsed = validateOptions('model', modelSpecSchema, spec);
  if (parsed.kind === 'timeseries' && parsed.cell === 'conv1d' && parsed.kernelSize > parsed.window) {
    validateOptions('model', z.object({ kernelSize: z.number().max(parsed.window, `must not exceed window (${parsed.window})`) }), parsed);
  }
  return parsed;
}

/** tfjs' own epsilon: probabilities are clipped to [ε, 1 − ε] before the log (in training and in `evaluate`). */
export const probabilityEpsilon = 1e-7;

/** The loss a spec trains with: its own, or the usual one for its kind. */
export function lossOf(spec: ModelSpec): LossName {
  if (spec.loss) return spec.loss;
  if (spec.kind === 'logistic') return spec.outputs > 1 ? 'categoricalCrossentropy' : 'binaryCrossentropy';
  if ((spec.kind === 'mlp' || spec.kind === 'timeseries') && spec.outputActivation === 'softmax') return 'categoricalCrossentropy';
  return 'mse';
}

/** The length of one sample's `features`: the feature count, or window × features for time series (oldest first). */
export function sampleLengthOf(spec: ModelSpec): number {
  return spec.kind === 'timeseries' ? spec.window * spec.features : spec.features;
}

/**
 * The shape of one sample as the model takes it. A Conv1D model takes its
 * window unfolded into the k-step slices the filters see, [window − k + 1, k × features]:
 * its 'conv' layer is then a dense layer shared over the slices, the same
 * function and the same kernel layout as a valid, stride-1 Conv1D, but with
 * gradients on every backend (wasm has no Conv2DBackpropFilter kernel).
 */
export function inputShapeOf(spec: ModelSpec): number[] {
  if (spec.kind !== 'timeseries') return [spec.features];
  if (spec.cell === 'conv1d') return [spec.window - spec.kernelSize + 1, spec.kernelSize * spec.features];
  return [spec.window, spec.features];
}

/** Writes one sample's features, as the model takes them, into `target` at `offset`. */
export function writeModelInput(spec: ModelSpec, features: ArrayLike<number>, target: Float32Array, offset: number): void {
  if (spec.kind !== 'timeseries' || spec.cell !== 'conv1d') {
    target.set(features, offset);
    return;
  }
  const slice = spec.kernelSize * spec.features;
  for (let t = 0; t + spec.kernelSize <= spec.window; t++) {
    for (let i = 0; i < slice; i++) target[offset + t * slice + i] = features[t * spec.features + i]!;
  }
}

/**
 * Builds the model as a TensorFlow.js LayersModel with seeded initial weights
 * (glorot-uniform kernels, zero biases), so the same spec gives the same model
 * in every process. Its weights' names are stable: `<layer>/kernel`, `<layer>/bias`, ….
 */
export function buildModel(spec: ModelSpec): tf.Sequential {
  let seed = spec.seed;
  const init = () => tf.initializers.glorotUniform({ seed: seed++ });
  const recurrentInit = () => tf.initializers.orthogonal({ seed: seed++, gain: 1 });
  const layers: tf.layers.Layer[] = [];
  const inputShape = inputShapeOf(spec);
  switch (spec.kind) {
    case 'linear':
      layers.push(tf.layers.dense({ name: 'linear', inputShape, units: spec.outputs, kernelInitializer: init() }));
      break;
    case 'logistic':
      layers.push(tf.layers.dense({ name: 'logistic', inputShape, units: spec.outputs, activation: spec.outputs > 1 ? 'softmax' : 'sigmoid', kernelInitializer: init() }));
      break;
    case 'mlp':
      spec.layers.forEach((layer, i) => {
        layers.push(tf.layers.dense({ name: `dense_${i}`, ...(i === 0 ? { inputShape } : {}), units: layer.units, activation: layer.activation, kernelInitializer: init() }));
        if (layer.dropout > 0) layers.push(tf.layers.dropout({ name: `dropout_${i}`, rate: layer.dropout, seed: seed++ }));
      });
      layers.push(tf.layers.dense({ name: 'output', units: spec.outputs, activation: spec.outputActivation, kernelInitializer: init() }));
      break;
    case 'timeseries':
      if (spec.cell === 'conv1d') {
        layers.push(tf.layers.dense({ name: 'conv', inputShape, units: spec.units, activation: 'relu', kernelInitializer: init() }));
        layers.push(tf.layers.flatten({ name: 'flatten' }));
      } else {
        layers.push(tf.layers.lstm({ name: 'lstm', inputShape, units: spec.units, kernelInitializer: init(), recurrentInitializer: recurrentInit() }));
      }
      layers.push(tf.layers.dense({ name: 'output', units: spec.outputs, activation: spec.outputActivation, kernelInitializer: init() }));
      break;
  }
  return tf.sequential({ name: spec.kind, layers });
}

/** A model's trainable variables by their stable name (`dense_0/kernel`, …), in a fixed order. */
export function trainableVariables(model: tf.LayersModel): Array<{ name: string; variable: tf.Variable }> {
  return model.trainableWeights.map((weight) => ({ name: weight.originalName, variable: (weight as unknown as { read(): tf.Variable }).read() }));
}
