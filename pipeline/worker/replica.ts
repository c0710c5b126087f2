import * as tf from '@tensorflow/tfjs';
import { Subject, type Observable } from 'rxjs';
import type { GradientModel, StepGradients } from '../../operators/gradientStep.js';
import { SnapshotMismatchError } from '../common/errors.js';
import { decodeTensor } from '../../schemas/tensorCodec.js';
import type { ModelSnapshot, TrainingSample } from '../../schemas/types.js';
import { assignShards } from '../common/shards.js';
import { buildModel, inputShapeOf, lossOf, sampleLengthOf, trainableVariables, writeModelInput, type LossName, type ModelSpec } from '../common/model.js';

// tfjs' own epsilon: probabilities are clipped to [ε, 1 − ε] before the log.
const epsilon = 1e-7;

/** Per-sample losses, shape [batch]: mean squared error over the outputs, or cross-entropy. */
function perSampleLoss(loss: LossName, predicted: tf.Tensor, target: tf.Tensor): tf.Tensor1D {
  switch (loss) {
    case 'mse':
      return tf.mean(tf.squaredDifference(predicted, target), -1) as tf.Tensor1D;
    case 'binaryCrossentropy': {
      const p = tf.clipByValue(predicted, epsilon, 1 - epsilon);
      return tf.neg(tf.mean(tf.add(tf.mul(target, tf.log(p)), tf.mul(tf.sub(1, target), tf.log(tf.sub(1, p)))), -1)) as tf.Tensor1D;
    }
    case 'categoricalCrossentropy': {
      const p = tf.clipByValue(predicted, epsilon, 1 - epsilon);
      return tf.neg(tf.sum(tf.mul(target, tf.log(p)), -1)) as tf.Tensor1D;
    }
  }
}

/**
 * A worker's local copy of the model. It computes gradients for micro-batches
 * (summed over the samples, weighted by each sample's weight) and knows, per
 * shard, the version its weights come from. Every tensor it makes is disposed.
 */
export class Replica implements GradientModel<TrainingSample> {
  readonly model: tf.Sequential;
  readonly loss: LossName;
  readonly shardCount: number;
  private readonly variables: Array<{ name: string; variable: tf.Variable }>;
  private readonly shards: Map<string, number>;
  private readonly versions: number[];
  private readonly sampleSize: number;
  private readonly sampleLength: number;
  /** Per shard: input partition (`topic:partition`) → the last offset its latest snapshot accounts for. */
  private readonly appliedOffsets: Array<Map<string, number>>;
  private readonly applied = new Subject<ModelSnapshot>();
  /** Emits each snapshot once the replica has taken it in. */
  readonly snapshots: Observable<ModelSnapshot> = this.applied.asObservable();

  constructor(readonly spec: ModelSpec) {
    this.model = buildModel(spec);
    this.loss = lossOf(spec);
    this.variables = trainableVariables(this.model);
    this.shardCount = spec.shards;
    this.shards = assignShards(this.variables.map(({ name, variable }) => ({ name, size: variable.size })), spec.shards);
    this.versions = new Array<number>(spec.shards).fill(0);
    this.sampleSize = inputShapeOf(spec).reduce((a, b) => a * b, 1);
    this.sampleLength = sampleLengthOf(spec);
    this.appliedOffsets = Array.from({ length: spec.shards }, () => new Map<string, number>());
  }

  shardOf(variableName: string): number {
    const shard = this.shards.get(variableName);
    if (shard === undefined) throw new RangeError(`no variable named ${variableName} in the ${this.spec.kind} model`);
    return shard;
  }

  baseVersion(shard: number): number {
    return this.versions[shard] ?? 0;
  }

  /** Records that the weights of `shard` now come from `version` (after a snapshot was loaded). */
  setVersion(shard: number, version: number): void {
    this.versions[shard] = version;
  }

  /** The variables' names, shapes and current values. */
  weights(): Array<{ name: string; shape: number[]; values: Float32Array }> {
    return this.variables.map(({ name, variable }) => ({ name, shape: [...variable.shape], values: variable.dataSync() as Float32Array }));
  }

  /** Overwrites one variable's values (from a snapshot, or an optimizer step in tests). */
  assign(name: string, values: Float32Array): void {
    const entry = this.variables.find((v) => v.name === name);
    if (!entry) throw new RangeError(`no variable named ${name} in the ${this.spec.kind} model`);
    tf.tidy(() => entry.variable.assign(tf.tensor(values, entry.variable.shape)));
  }

  /**
   * Takes in one shard's snapshot, if it is newer than what the replica has:
   * its weights, its version and the input offsets it accounts for. Called
   * between steps (JavaScript runs one at a time), never during one.
   */
  applySnapshot(snapshot: ModelSnapshot): boolean {
    if (snapshot.shard < 0 || snapshot.shard >= this.shardCount) {
      throw new SnapshotMismatchError(snapshot, `shard ${snapshot.shard} is outside the model's ${this.shardCount} shards`);
    }
    if (snapshot.version <= this.baseVersion(snapshot.shard) && snapshot.version !== 0) return false;
    for (const tensor of snapshot.tensors) {
      const variable = this.variables.find((v) => v.name === tensor.name);
      if (!variable) throw new SnapshotMismatchError(snapshot, `it has a tensor '${tensor.name}' that the ${this.spec.kind} model does not`);
      if (tensor.shape.join(',') !== variable.variable.shape.join(',')) {
        throw new SnapshotMismatchError(snapshot, `tensor '${tensor.name}' has shape [${tensor.shape.join(', ')}], the model's is [${variable.variable.shape.join(', ')}]`);
      }
      this.assign(tensor.name, decodeTensor(tensor));
    }
    this.versions[snapshot.shard] = snapshot.version;
    const offsets = this.appliedOffsets[snapshot.shard]!;
    for (const { topic, partition, offset } of snapshot.appliedOffsets) offsets.set(`${topic}:${partition}`, offset);
    this.applied.next(snapshot);
    return true;
  }

  /** The last offset of an input partition that every shard's latest snapshot accounts for, or -1. */
  reflectedOffset(topic: string, partition: number): number {
    let lowest = Number.POSITIVE_INFINITY;
    for (const offsets of this.appliedOffsets) lowest = Math.min(lowest, offsets.get(`${topic}:${partition}`) ?? -1);
    return lowest;
  }

  /** Packs samples into input, target and weight arrays. Labels: `label`, or `labels` for several outputs. */
  private pack(samples: readonly TrainingSample[]): { x: Float32Array; y: Float32Array; w: Float32Array } {
    const outputs = this.spec.outputs;
    const x = new Float32Array(samples.length * this.sampleSize);
    const y = new Float32Array(samples.length * outputs);
    const w = new Float32Array(samples.length);
    samples.forEach((sample, i) => {
      if (sample.features.length !== this.sampleLength) {
        throw new RangeError(`sample of device '${sample.deviceId}' has ${sample.features.length} features; the ${this.spec.kind} model takes ${this.sampleLength}`);
      }
      writeModelInput(this.spec, sample.features, x, i * this.sampleSize);
      if (sample.labels.length === outputs) y.set(sample.labels, i * outputs);
      else y[i * outputs] = sample.label ?? 0;
      w[i] = sample.weight;
    });
    return { x, y, w };
  }

  gradients(samples: readonly TrainingSample[]): StepGradients {
    const { x, y, w } = this.pack(samples);
    const n = samples.length;
    return tf.tidy(() => {
      const input = tf.tensor(x, [n, ...inputShapeOf(this.spec)]);
      const target = tf.tensor2d(y, [n, this.spec.outputs]);
      const weight = tf.tensor1d(w);
      const objective = () => tf.sum(tf.mul(perSampleLoss(this.loss, this.model.apply(input, { training: true }) as tf.Tensor, target), weight)) as tf.Scalar;
      const { value, grads } = tf.variableGrads(objective, this.variables.map((v) => v.variable));
      return {
        gradients: this.variables.map(({ name, variable }) => ({ name, shape: [...variable.shape], values: grads[variable.name]!.dataSync() as Float32Array })),
        lossSum: value.dataSync()[0]!,
        sampleCount: n,
      };
    });
  }

  /** The summed loss of `samples` under the current weights, without gradients. */
  lossSum(samples: readonly TrainingSample[]): number {
    const { x, y, w } = this.pack(samples);
    return tf.tidy(() => {
      const predicted = this.model.apply(tf.tensor(x, [samples.length, ...inputShapeOf(this.spec)])) as tf.Tensor;
      return tf.sum(tf.mul(perSampleLoss(this.loss, predicted, tf.tensor2d(y, [samples.length, this.spec.outputs])), tf.tensor1d(w))).dataSync()[0]!;
    });
  }

  dispose(): void {
    this.applied.complete();
    this.model.dispose();
  }
}
