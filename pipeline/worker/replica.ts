import * as tf from '@tensorflow/tfjs';
import { Subject, type Observable } from 'rxjs';
import type { GradientModel, StepGradients } from '../../operators/gradientStep.js';
import type { ShardBase } from '../../operators/parameterUpdates.js';
import { concatScores, scoreSamples, type SampleScores } from '../../operators/prequential.js';
import { SnapshotMismatchError } from '../common/errors.js';
import { decodeTensor } from '../../schemas/tensorCodec.js';
import { batchRows, sampleBatchOf, type SampleBatch } from '../../schemas/sampleDecoder.js';
import type { FeatureMoments, ModelSnapshot, TrainingSample } from '../../schemas/types.js';
import { laneKey } from '../../operators/kafkaOffsets.js';
import { assignShards } from '../common/shards.js';
import { createOptimizer, type Optimizer, type OptimizerSpec } from '../common/optimizers.js';
import { ForeignStaleness, lowersMomentum, momentumUnderStaleness, StepsPerUpdate, type StepMark } from './asyncMomentum.js';
import { applyScaling, assertScalingFits, mergeMoments, momentsOf } from '../common/featureMoments.js';
import { InputScaling } from './inputScaling.js';
import { DenseGradients } from './denseGradients.js';
import { servedSnapshot } from '../common/averaging.js';
import { isLaterSnapshot } from '../common/modelStore.js';
import { localStepsIn } from '../common/config.js';
import { buildModel, inputShapeOf, lossOf, probabilityEpsilon, sampleLengthOf, trainableVariables, writeModelInput, type LossName, type ModelSpec } from '../common/model.js';

/** Per-sample losses, shape [batch]: mean squared error over the outputs, or cross-entropy. */
function perSampleLoss(loss: LossName, predicted: tf.Tensor, target: tf.Tensor): tf.Tensor1D {
  switch (loss) {
    case 'mse':
      return tf.mean(tf.squaredDifference(predicted, target), -1) as tf.Tensor1D;
    case 'binaryCrossentropy': {
      const p = tf.clipByValue(predicted, probabilityEpsilon, 1 - probabilityEpsilon);
      return tf.neg(tf.mean(tf.add(tf.mul(target, tf.log(p)), tf.mul(tf.sub(1, target), tf.log(tf.sub(1, p)))), -1)) as tf.Tensor1D;
    }
    case 'categoricalCrossentropy': {
      const p = tf.clipByValue(predicted, probabilityEpsilon, 1 - probabilityEpsilon);
      return tf.neg(tf.sum(tf.mul(target, tf.log(p)), -1)) as tf.Tensor1D;
    }
  }
}

/** What a replica trains on or scores: a batch in columns, or checked sample objects. */
export type SampleInput = SampleBatch | readonly TrainingSample[];

function isSampleBatch(samples: SampleInput): samples is SampleBatch {
  return !Array.isArray(samples);
}

/**
 * A worker's local copy of the model. It computes gradients for micro-batches
 * (summed over the samples, weighted by each sample's weight) and knows, per
 * shard, the version its weights come from. Every tensor it makes is disposed.
 */
export class Replica implements GradientModel {
  readonly model: tf.Sequential;
  readonly loss: LossName;
  readonly shardCount: number;
  private readonly variables: Array<{ name: string; variable: tf.Variable }>;
  private readonly shards: Map<string, number>;
  private readonly bases: ShardBase[];
  private readonly sampleSize: number;
  private readonly sampleLength: number;
  /** Per shard: input partition (`topic:partition`) → the last offset its latest snapshot accounts for. */
  private readonly appliedOffsets: Array<Map<string, number>>;
  private readonly applied = new Subject<ModelSnapshot>();
  /** Emits each snapshot once the replica has taken it in. */
  readonly snapshots: Observable<ModelSnapshot> = this.applied.asObservable();
  /** With `updates: 'deltas'`: the replica's own optimizer and the deltas of its steps not yet in every snapshot. */
  private readonly local: LocalLearner | undefined;
  /** With `normalize`: the moments inputs are scaled by. */
  private scaling: InputScaling | undefined;
  /** A dense model on tfjs-node: its gradients without tfjs' tape (see `denseGradients.ts`). */
  private readonly dense: DenseGradients | undefined;
  /**
   * Per variable, the array its values were last written from: the replica owns it and never changes it while it is
   * the variable's, so a step reads its weights here instead of copying them out of the backend (a backend may keep
   * the array it was given until an op first uses the variable).
   */
  private readonly written = new Map<string, Float32Array>();
  /** How the local optimizer reads and writes the weights: {@link current} and {@link write}. */
  private readonly weightsAccess: WeightsAccess = { current: (name) => this.current(name), write: (name, values) => this.write(name, values) };
  /** With `updates: 'deltas'`: the samples of one local step; a larger batch takes several steps. */
  private readonly stepSamples: number;

  /**
   * `options.tape`: compute gradients through tfjs' tape even where the dense step would do (for tests that compare the
   * two). `options.stepSamples`: with `updates: 'deltas'`, the local optimizer steps on this many samples at a time
   * (the experiment's `batchSize`; a worker's batches of `stepsPerUpdate` times that take as many steps).
   */
  constructor(
    readonly spec: ModelSpec,
    options: { readonly tape?: boolean; readonly stepSamples?: number } = {},
  ) {
    this.stepSamples = options.stepSamples ?? Number.POSITIVE_INFINITY;
    this.model = buildModel(spec);
    this.loss = lossOf(spec);
    this.variables = trainableVariables(this.model);
    this.shardCount = spec.shards;
    this.shards = assignShards(this.variables.map(({ name, variable }) => ({ name, size: variable.size })), spec.shards);
    this.bases = Array.from({ length: spec.shards }, () => ({ version: 0, updatesOffset: 0 }));
    this.sampleSize = inputShapeOf(spec).reduce((a, b) => a * b, 1);
    this.sampleLength = sampleLengthOf(spec);
    this.appliedOffsets = Array.from({ length: spec.shards }, () => new Map<string, number>());
    this.local = spec.updates === 'deltas' ? new LocalLearner(spec.optimizer, spec.asyncMomentum, spec.asyncStepSize === 'scale', spec.localSteps) : undefined;
    this.scaling = spec.normalize ? new InputScaling(spec.features) : undefined;
    this.dense = options.tape ? undefined : DenseGradients.for(spec, this.variables);
  }

  /**
   * A replica of the served model of `snapshots` (the newest of each shard): the weights' averages where the server
   * keeps them (`model.averageDecay`), as `export`, `evaluate` and the demo serve it. The caller disposes of it.
   */
  static served(spec: ModelSpec, snapshots: Iterable<ModelSnapshot>): Replica {
    const replica = new Replica(spec);
    try {
      for (const snapshot of snapshots) replica.applySnapshot(servedSnapshot(snapshot));
      return replica;
    } catch (error) {
      replica.dispose();
      throw error;
    }
  }

  shardOf(variableName: string): number {
    const shard = this.shards.get(variableName);
    if (shard === undefined) throw new RangeError(`no variable named ${variableName} in the ${this.spec.kind} model`);
    return shard;
  }

  /** The snapshot of `shard` that the weights come from (version 0 at updates offset 0 before any). */
  base(shard: number): ShardBase {
    return this.bases[shard] ?? { version: 0, updatesOffset: 0 };
  }

  /** Records that the weights of `shard` now come from this snapshot (after it was loaded). */
  setBase(shard: number, base: ShardBase): void {
    this.bases[shard] = base;
  }

  /** The variables' names, shapes and current values. */
  weights(): Array<{ name: string; shape: number[]; values: Float32Array }> {
    return this.variables.map(({ name, variable }) => ({ name, shape: [...variable.shape], values: variable.dataSync() as Float32Array }));
  }

  /** Overwrites one variable's values with a copy of `values` (an optimizer step in tests). */
  assign(name: string, values: Float32Array): void {
    this.write(name, values.slice());
  }

  /** Overwrites one variable's values with `values`, which the replica owns from now on. */
  private write(name: string, values: Float32Array): void {
    const variable = this.variableNamed(name);
    tf.tidy(() => variable.assign(tf.tensor(values, variable.shape)));
    this.written.set(name, values);
  }

  private variableNamed(name: string): tf.Variable {
    const entry = this.variables.find((v) => v.name === name);
    if (!entry) throw new RangeError(`no variable named ${name} in the ${this.spec.kind} model`);
    return entry.variable;
  }

  /** A variable's current values, not to be changed: the array they were written from, or read once from the backend. */
  private current(name: string): Float32Array {
    let values = this.written.get(name);
    if (!values) this.written.set(name, (values = this.variableNamed(name).dataSync() as Float32Array));
    return values;
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
    const base = this.base(snapshot.shard);
    if (!isLaterSnapshot(snapshot, base) && snapshot.version !== 0) return false;
    if (snapshot.version === base.version && snapshot.version !== 0) {
      // The same weights, from further on in the updates partition (past aborted records): later updates count from there.
      this.bases[snapshot.shard] = { version: base.version, updatesOffset: snapshot.updatesOffset };
      this.applied.next(snapshot);
      return false;
    }
    assertScalingFits(snapshot, this.spec.normalize);
    // Input partition (`topic:partition`) → the last offset this snapshot accounts for.
    const reflected = new Map(snapshot.appliedOffsets.map(({ topic, partition, offset }) => [laneKey(topic, partition), offset]));
    for (const tensor of snapshot.tensors) {
      const variable = this.variables.find((v) => v.name === tensor.name);
      if (!variable) throw new SnapshotMismatchError(snapshot, `it has a tensor '${tensor.name}' that the ${this.spec.kind} model does not`);
      if (tensor.shape.join(',') !== variable.variable.shape.join(',')) {
        throw new SnapshotMismatchError(snapshot, `tensor '${tensor.name}' has shape [${tensor.shape.join(', ')}], the model's is [${variable.variable.shape.join(', ')}]`);
      }
      const values = decodeTensor(tensor);
      if (this.local) this.local.takeIn(tensor.name, values, reflected, this.weightsAccess);
      else this.write(tensor.name, values);
    }
    this.bases[snapshot.shard] = { version: snapshot.version, updatesOffset: snapshot.updatesOffset };
    const offsets = this.appliedOffsets[snapshot.shard]!;
    for (const [key, offset] of reflected) offsets.set(key, offset);
    if (snapshot.shard === 0) this.local?.shardZeroHolds(snapshot.updatesApplied, reflected);
    this.local?.prune((key) => this.reflectedBy(key));
    if (snapshot.shard === 0) this.scaling?.takeSnapshot(snapshot.featureMoments, reflected);
    this.applied.next(snapshot);
    return true;
  }

  /** The last offset of an input partition that every shard's latest snapshot accounts for, or -1. */
  reflectedOffset(topic: string, partition: number): number {
    return this.reflectedBy(laneKey(topic, partition));
  }

  private reflectedBy(key: string): number {
    let lowest = Number.POSITIVE_INFINITY;
    for (const offsets of this.appliedOffsets) lowest = Math.min(lowest, offsets.get(key) ?? -1);
    return lowest;
  }

  /**
   * Samples as a step takes them: in columns already (a worker lane's batch), or checked sample objects (tests,
   * holdouts), put in columns here.
   */
  private columnsOf(samples: SampleInput): SampleBatch {
    return isSampleBatch(samples) ? samples : sampleBatchOf(samples, this.sampleLength, this.spec.outputs);
  }

  /** The model's input for a batch (scaled with `normalize`), its targets and weights. */
  private pack(batch: SampleBatch): { x: Float32Array; y: Float32Array; w: Float32Array } {
    if (batch.featureCount !== this.sampleLength || batch.targetCount !== this.spec.outputs) {
      throw new RangeError(`a batch of ${batch.featureCount} features and ${batch.targetCount} targets per sample; the ${this.spec.kind} model takes ${this.sampleLength} and ${this.spec.outputs}`);
    }
    let x: Float32Array;
    if (this.sampleSize === this.sampleLength && !(this.spec.kind === 'timeseries' && this.spec.cell === 'conv1d')) {
      // The features are the input. With `normalize` a copy is scaled: the batch keeps the raw features.
      x = this.scaling ? batch.features.slice() : batch.features;
    } else {
      x = new Float32Array(batch.length * this.sampleSize);
      for (let i = 0; i < batch.length; i++) writeModelInput(this.spec, batch.features.subarray(i * this.sampleLength, (i + 1) * this.sampleLength), x, i * this.sampleSize);
    }
    if (this.scaling) applyScaling(this.scaling.scaling, x);
    return { x, y: batch.targets, w: batch.weights };
  }

  /**
   * The batch's gradients, summed over its samples. With `updates: 'deltas'` the replica instead steps its own
   * optimizer on the mean gradient of each part of the batch in turn (as few parts as hold at most `stepSamples`
   * samples each), and returns the summed change in weights (times the sample count, so that the server's mean is
   * the change); {@link placeLastStep} then files it under the input offsets it came from.
   */
  gradients(samples: SampleInput): StepGradients {
    const batch = this.columnsOf(samples);
    if (!this.local) {
      const featureMoments = this.observeMoments(batch);
      return { ...this.computeGradients(batch), featureMoments };
    }
    // Each step as if it were an update of its own: its samples' moments join the scaling before it scales them.
    const steps: StepGradients[] = [];
    let featureMoments: FeatureMoments | undefined;
    // Parts of nearly equal size: a batch cut short by its wait takes no small, noisy last step.
    const parts = localStepsIn(batch.length, this.stepSamples);
    for (let part = 0; part < parts; part++) {
      const rows = batchRows(batch, Math.round((part * batch.length) / parts), Math.round(((part + 1) * batch.length) / parts));
      featureMoments = this.observeMoments(rows, featureMoments);
      const step = this.computeGradients(rows);
      this.local.step(step, this.weightsAccess);
      steps.push(step);
    }
    return { ...this.local.update(steps), featureMoments };
  }

  /**
   * With `normalize`: the batch's raw feature moments (merged onto `earlier`, those of the update's steps before it),
   * merged into the scaling before the batch is scaled.
   */
  private observeMoments(batch: SampleBatch, earlier?: FeatureMoments): FeatureMoments | undefined {
    if (!this.scaling) return undefined;
    const own = momentsOf(batch.features, this.spec.features);
    const moments = earlier ? mergeMoments(earlier, own) : own;
    this.scaling.observe(moments);
    return moments;
  }

  /**
   * The last step (its deltas, its feature moments) came from `topic[partition]` up to `lastOffset`, in the lane
   * `owner`: it stays part of the replica until the snapshots hold it.
   */
  placeLastStep(owner: object, topic: string, partition: number, lastOffset: number): void {
    this.local?.place(owner, laneKey(topic, partition), lastOffset);
    this.scaling?.place(owner, laneKey(topic, partition), lastOffset);
  }

  /** The lane `owner` ended without committing all it made: its deltas and moments not yet in a snapshot are gone. */
  forgetPending(owner: object): void {
    this.local?.forget(owner);
    this.scaling?.forget(owner);
  }

  /**
   * With `deltas`: the share of the input's partitions this worker trains (1 alone, in a replay or in sync mode), by
   * which its updates count where `model.localSteps` averages the workers.
   */
  setDataShare(share: number): void {
    if (!(share > 0 && share <= 1)) throw new RangeError(`a worker's share of the input must be in (0, 1], got ${share}`);
    if (this.local) this.local.share = share;
  }

  /** With `deltas`: the other workers' updates that this worker's steps miss, as estimated from its snapshots (0 with one worker). */
  foreignStaleness(): number {
    return this.local?.foreignStaleness ?? 0;
  }

  /** With `normalize`: the moments inputs are scaled by now (shard 0's snapshot and the replica's own batches on top). */
  scalingMoments(): FeatureMoments | undefined {
    return this.scaling?.moments();
  }

  /**
   * Folds the input scaling into the first layer (its kernel rows times the factor, its bias less the shifted
   * inputs' share), so that the model takes raw features and gives the same outputs. For an export: the replica
   * scales no more afterwards.
   */
  foldScaling(): void {
    if (!this.scaling) return;
    const { shift, factor } = this.scaling.scaling;
    const kernel = this.variables[0];
    const bias = this.variables.find(({ name }) => kernel && name === kernel.name.replace(/kernel$/, 'bias'));
    if (!kernel || !bias || kernel.variable.shape.length !== 2) throw new RangeError(`the ${this.spec.kind} model's first layer has no kernel and bias to fold the input scaling into`);
    const [rows, columns] = kernel.variable.shape as [number, number];
    const weights = this.current(kernel.name).slice();
    const offsets = this.current(bias.name).slice();
    for (let r = 0; r < rows; r++) {
      const f = r % shift.length;
      for (let c = 0; c < columns; c++) {
        weights[r * columns + c]! *= factor[f]!;
        offsets[c]! -= shift[f]! * weights[r * columns + c]!;
      }
    }
    this.write(kernel.name, weights);
    this.write(bias.name, offsets);
    this.scaling = undefined;
  }

  private computeGradients(batch: SampleBatch): StepGradients {
    const { x, y, w } = this.pack(batch);
    const n = batch.length;
    if (this.dense) {
      const step = this.dense.compute(x, y, w, n);
      const gradients = this.variables.map(({ name, variable }, i) => ({ name, shape: [...variable.shape], values: step.gradients[i]! }));
      return { gradients, lossSum: step.lossSum, sampleCount: n, scores: scoreSamples(step.predicted, y, step.losses, this.spec.outputs, this.loss !== 'mse') };
    }
    // Test, then train: the forward pass of the step scores each sample before the step learns from it.
    let scores: SampleScores | undefined;
    const computed = tf.tidy(() => {
      const input = tf.tensor(x, [n, ...inputShapeOf(this.spec)]);
      const target = tf.tensor2d(y, [n, this.spec.outputs]);
      const weight = tf.tensor1d(w);
      const objective = () => {
        const predicted = this.model.apply(input, { training: true }) as tf.Tensor;
        const losses = tf.mul(perSampleLoss(this.loss, predicted, target), weight);
        scores = scoreSamples(predicted.dataSync(), y, losses.dataSync() as Float32Array, this.spec.outputs, this.loss !== 'mse');
        return tf.sum(losses) as tf.Scalar;
      };
      const { value, grads } = tf.variableGrads(objective, this.variables.map((v) => v.variable));
      return { value, grads: this.variables.map(({ variable }) => grads[variable.name]!) };
    });
    // Read outside the tidy: tidy walks what it returns, element by element through typed arrays.
    const gradients = this.variables.map(({ name, variable }, i) => ({ name, shape: [...variable.shape], values: computed.grads[i]!.dataSync() as Float32Array }));
    const lossSum = computed.value.dataSync()[0]!;
    tf.dispose([computed.value, ...computed.grads]);
    return { gradients, lossSum, sampleCount: n, scores };
  }

  /** The model's outputs for `samples` under the current weights (n × outputs), with their targets and weights. */
  predict(samples: SampleInput): { predicted: Float32Array; target: Float32Array; weight: Float32Array } {
    const batch = this.columnsOf(samples);
    const { x, y, w } = this.pack(batch);
    const predicted = tf.tidy(() => (this.model.apply(tf.tensor(x, [batch.length, ...inputShapeOf(this.spec)])) as tf.Tensor).dataSync() as Float32Array);
    return { predicted, target: y, weight: w };
  }

  /** The summed loss of `samples` under the current weights, without gradients. */
  lossSum(samples: SampleInput): number {
    const batch = this.columnsOf(samples);
    const { x, y, w } = this.pack(batch);
    return tf.tidy(() => {
      const predicted = this.model.apply(tf.tensor(x, [batch.length, ...inputShapeOf(this.spec)])) as tf.Tensor;
      return tf.sum(tf.mul(perSampleLoss(this.loss, predicted, tf.tensor2d(y, [batch.length, this.spec.outputs])), tf.tensor1d(w))).dataSync()[0]!;
    });
  }

  dispose(): void {
    this.applied.complete();
    this.model.dispose();
  }
}

/** A variable's current weights (not to be changed), and handing the replica the array of its new ones. */
interface WeightsAccess {
  current(name: string): Float32Array;
  write(name: string, values: Float32Array): void;
}

/** A local step's change in weights, filed under the input offsets it came from. */
interface PendingDelta {
  readonly owner: object;
  /** `topic:partition` of the input. */
  readonly key: string;
  readonly lastOffset: number;
  /** Per variable, the change in weights times the step's sample count, as sent. */
  readonly deltas: ReadonlyMap<string, Float32Array>;
  /** 1 / the step's sample count: what turns {@link deltas} back into the change in weights. */
  readonly perSample: number;
  /** The variables whose shard's snapshots do not hold this delta yet: it is in their {@link LocalLearner} sums. */
  readonly unreflected: Set<string>;
  /** Where the step stood, until shard 0's snapshots hold it (then undefined). */
  mark: StepMark | undefined;
}

/**
 * A worker that sends deltas trains its replica itself: one optimizer over all its lanes, so the worker is a
 * sequential learner on what it reads. Its replica is then the newest snapshot plus its own deltas that the snapshot
 * does not hold yet (they are on their way to the server, or waiting for their checkpoint); beside other workers,
 * taken in every `localSteps` steps, its updates counting by the worker's share (local steps with model averaging).
 */
class LocalLearner {
  private readonly slots = new Map<string, Record<string, Float32Array>>();
  private steps = 0;
  private pending: PendingDelta[] = [];
  /**
   * Per variable, the sum of the pending deltas that its shard's newest snapshot does not hold: added onto each
   * snapshot's values, so a snapshot costs one pass over the weights however many deltas are pending.
   */
  private readonly unreflectedSums = new Map<string, Float64Array>();
  private last: { readonly deltas: Map<string, Float32Array>; readonly perSample: number } | undefined;
  /** Per variable, the summed change in weights of the steps since the last update. */
  private change = new Map<string, Float32Array>();
  /** Per variable, the array the next step writes its weights into (the one before last, which nothing reads now). */
  private readonly spare = new Map<string, Float32Array>();
  /** The other workers' updates the steps miss, and the optimizer for that (when the momentum is lowered; `asyncStepSize: scale` uses it too). */
  private readonly foreign = new ForeignStaleness();
  /** The steps the recent updates held (what `asyncMomentum: auto` decides by). */
  private readonly stepsPerUpdate = new StepsPerUpdate();
  private shardZeroApplied = 0;
  /** The share of the input's partitions the worker trains (see {@link Replica.setDataShare}). */
  share = 1;
  /** Per variable, the newest snapshot's values, held until the replica takes them in (local steps with averaging). */
  private readonly held = new Map<string, Float32Array>();
  private stepsSinceTakenIn = 0;
  private optimizer: { readonly foreign: number; readonly optimizer: Optimizer };

  constructor(
    private readonly spec: OptimizerSpec,
    private readonly momentum: ModelSpec['asyncMomentum'],
    private readonly scaleStep: boolean,
    private readonly localSteps: number,
  ) {
    this.optimizer = { foreign: 0, optimizer: createOptimizer(spec) };
  }

  /** The other workers' updates the worker's steps miss (an estimate). */
  get foreignStaleness(): number {
    return this.foreign.value;
  }

  /** The optimizer of the next step: the spec's, its momentum lowered for the other workers' updates the step misses where {@link lowersMomentum} says. */
  private optimizerNow(): Optimizer {
    // Rounded, so that the optimizer is rebuilt only when the momentum moves visibly.
    // Averaging, a worker's steps follow its own path between snapshots: no other worker's steps to make up for.
    const foreign = !this.averages && lowersMomentum(this.momentum, this.stepsPerUpdate.value) ? Math.round(this.foreignStaleness * 10) / 10 : 0;
    if (foreign !== this.optimizer.foreign) this.optimizer = { foreign, optimizer: createOptimizer(momentumUnderStaleness(this.spec, foreign)) };
    return this.optimizer.optimizer;
  }

  /**
   * Steps the optimizer on the mean gradient of `computed` (its gradients are sums over its samples) and adds the
   * change to the next update's.
   */
  step(computed: StepGradients, { current, write }: WeightsAccess): void {
    if (this.held.size > 0 && (this.stepsSinceTakenIn >= this.localSteps || !this.averages)) this.takeInHeld(write);
    this.stepsSinceTakenIn += 1;
    const n = computed.sampleCount;
    this.steps += 1;
    const optimizer = this.optimizerNow();
    // Averaging, the learning rate over √share: the average of n workers' steps has about 1/√n of one step's noise
    // (the square-root scaling rule), and the server takes only its share of each. With `asyncStepSize: scale`, the
    // learning rate over 1 + τ (see the model spec).
    const rate = this.averages ? 1 / Math.sqrt(this.share) : this.scaleStep ? 1 / (1 + this.foreignStaleness) : 1;
    for (const { name, values: sum } of computed.gradients) {
      const before = current(name);
      let weights = this.spare.get(name);
      if (weights?.length !== before.length) weights = new Float32Array(before.length);
      // Every weight is written from `before`, and the sums become the mean inside the optimizer's one pass.
      optimizer.apply(weights, sum, this.slotsOf(name, weights.length), this.steps, rate, before, 1 / n);
      let change = this.change.get(name);
      if (!change) this.change.set(name, (change = new Float32Array(weights.length)));
      for (let i = 0; i < change.length; i++) change[i]! += weights[i]! - before[i]!;
      write(name, weights);
      // The replica no longer holds `before`: the next step writes into it.
      this.spare.set(name, before);
    }
  }

  /** The update of the steps since the last one (`steps`, in order): their summed change times their sample count. */
  update(steps: readonly StepGradients[]): StepGradients {
    this.stepsPerUpdate.updated(steps.length);
    const sampleCount = steps.reduce((sum, step) => sum + step.sampleCount, 0);
    const deltas = this.change;
    this.change = new Map();
    // Averaging, the server adds the worker's share of its change; the replica holds all of it until it takes in a snapshot.
    const factor = sampleCount * (this.averages ? this.share : 1);
    for (const sent of deltas.values()) for (let i = 0; i < sent.length; i++) sent[i]! *= factor;
    this.last = { deltas, perSample: 1 / sampleCount };
    const scores = steps.map((step) => step.scores);
    return {
      gradients: steps[0]!.gradients.map(({ name, shape }) => ({ name, shape, values: deltas.get(name)! })),
      lossSum: steps.reduce((sum, step) => sum + step.lossSum, 0),
      sampleCount,
      scores: scores.every((s) => s !== undefined) ? concatScores(scores) : undefined,
    };
  }

  place(owner: object, key: string, lastOffset: number): void {
    if (this.last) {
      const { deltas, perSample } = this.last;
      this.pending.push({ owner, key, lastOffset, deltas, perSample, unreflected: new Set(deltas.keys()), mark: this.foreign.mark(this.shardZeroApplied) });
      for (const [name, delta] of deltas) this.addToSum(name, delta, perSample);
    }
    this.last = undefined;
  }

  /** Adds `factor` times a pending delta (its {@link PendingDelta.perSample}, negated to take it out) to the variable's sum. */
  private addToSum(name: string, delta: Float32Array, factor: number): void {
    let sum = this.unreflectedSums.get(name);
    if (!sum) this.unreflectedSums.set(name, (sum = new Float64Array(delta.length)));
    for (let i = 0; i < delta.length; i++) sum[i]! += factor * delta[i]!;
  }

  /** Shard 0's snapshot, which has applied `applied` updates and holds the input up to `reflected` (per `topic:partition`). */
  shardZeroHolds(applied: number, reflected: ReadonlyMap<string, number>): void {
    this.shardZeroApplied = applied;
    const marks: StepMark[] = [];
    for (const entry of this.pending) {
      if (!entry.mark || entry.lastOffset > (reflected.get(entry.key) ?? -1)) continue;
      marks.push(entry.mark);
      entry.mark = undefined;
    }
    if (marks.length > 0) this.foreign.reflected(applied, marks);
  }

  forget(owner: object): void {
    for (const entry of this.pending) {
      if (entry.owner !== owner) continue;
      for (const name of entry.unreflected) this.addToSum(name, entry.deltas.get(name)!, -entry.perSample);
    }
    this.pending = this.pending.filter((entry) => entry.owner !== owner);
    this.resetSumsWhenIdle();
  }

  /** Local steps with model averaging: with other workers beside it, and `localSteps` above 1. */
  private get averages(): boolean {
    return this.localSteps > 1 && this.share < 1;
  }

  /**
   * Takes in a snapshot's `values` of `name`, plus the deltas that it does not reflect yet (`reflected`: its last
   * offset per input partition), at once or, averaging once it has stepped, at the first step `localSteps` after the
   * last time. Deltas it holds now leave the variable's sum for good: its shard's snapshots only move on.
   */
  takeIn(name: string, values: Float32Array, reflected: ReadonlyMap<string, number>, { write }: WeightsAccess): void {
    for (const entry of this.pending) {
      if (!entry.unreflected.has(name) || entry.lastOffset > (reflected.get(entry.key) ?? -1)) continue;
      entry.unreflected.delete(name);
      this.addToSum(name, entry.deltas.get(name)!, -entry.perSample);
    }
    this.held.set(name, values);
    // A worker that has not stepped yet (one joining a running job) starts from the newest weights.
    if (!this.averages || this.steps === 0) this.takeInHeld(write);
  }

  /**
   * Writes the held snapshot values, plus the pending deltas they do not reflect, into the replica. Averaging, that
   * can come between two local steps of one update: its steps so far are then pending too (not yet filed under their
   * offsets), and count as the filed ones do, by the worker's share.
   */
  private takeInHeld(write: WeightsAccess['write']): void {
    const partShare = this.averages ? this.share : 1;
    for (const [name, values] of this.held) {
      const sum = this.unreflectedSums.get(name);
      if (sum) for (let i = 0; i < values.length; i++) values[i]! += sum[i]!;
      const part = this.change.get(name);
      if (part) for (let i = 0; i < values.length; i++) values[i]! += partShare * part[i]!;
      write(name, values);
    }
    this.held.clear();
    this.stepsSinceTakenIn = 0;
  }

  /** Drops the deltas every shard's snapshot now holds. */
  prune(reflectedOffset: (key: string) => number): void {
    this.pending = this.pending.filter((entry) => entry.lastOffset > reflectedOffset(entry.key));
    this.resetSumsWhenIdle();
  }

  /** With no delta pending, the sums are exactly zero: reset them, so rounding cannot build up over a long run. */
  private resetSumsWhenIdle(): void {
    if (this.pending.some((entry) => entry.unreflected.size > 0)) return;
    for (const sum of this.unreflectedSums.values()) sum.fill(0);
  }

  private slotsOf(name: string, size: number): Record<string, Float32Array> {
    let slots = this.slots.get(name);
    if (!slots) this.slots.set(name, (slots = Object.fromEntries(this.optimizer.optimizer.slots.map((slot) => [slot, new Float32Array(size)]))));
    return slots;
  }
}
