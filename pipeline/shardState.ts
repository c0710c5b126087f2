import { decodeTensor, encodeTensor } from '../schemas/tensorCodec.js';
import type { ModelSnapshot, ParameterUpdate } from '../schemas/types.js';
import type { ModelSpec } from './model.js';
import { createOptimizer, type Optimizer } from './optimizers.js';

/** What a shard does with an update whose staleness (server version − baseVersion) is beyond the bound. */
export interface StalenessPolicy {
  /** `apply` as is, `scale` the learning rate by 1 / (1 + staleness), or `drop` (counted). */
  readonly policy: 'apply' | 'scale' | 'drop';
  /** Staleness up to this is applied as is. */
  readonly bound: number;
}

/** What became of one update. */
export type UpdateOutcome = 'applied' | 'dropped' | 'counted' | 'duplicate';

/**
 * One parameter-server shard: its variables, its optimizer slots, its version
 * and the counters that prove nothing was lost. Plain float32 arrays, no
 * TensorFlow.js: applying an update is element-wise.
 */
export class ShardState {
  version = 0;
  samplesApplied = 0;
  updatesApplied = 0;
  updatesDroppedStale = 0;
  samplesDroppedStale = 0;
  deadLettered = 0;
  lossSum = 0;
  /** Optimizer steps taken (Adam's bias correction counts them). */
  private steps = 0;
  private readonly optimizer: Optimizer;
  private readonly appliedOffsets = new Map<string, { topic: string; partition: number; offset: number }>();
  /**
   * Per input partition and kind (gradients or dead-letter counts), the last offset taken in this
   * shard's life since its last restore. Each lane sends its updates in offset order, each offset
   * once, so a range at or below it is a repeat: refused, whatever upstream let it through.
   */
  private readonly lastTaken = new Map<string, number>();
  /** Appended-at times (the oldest sample of each) of the updates taken in since the last snapshot, for freshness. */
  private pendingAppendTimes: number[] = [];

  private constructor(
    readonly namespace: string,
    readonly shard: number,
    readonly spec: ModelSpec,
    readonly variables: Map<string, { shape: number[]; values: Float32Array }>,
    readonly slots: Map<string, Record<string, Float32Array>>,
  ) {
    this.optimizer = createOptimizer(spec.optimizer);
    for (const [name, { values }] of variables) {
      if (!slots.has(name)) slots.set(name, Object.fromEntries(this.optimizer.slots.map((slot) => [slot, new Float32Array(values.length)])));
    }
  }

  /** A fresh shard from the model's seeded initial weights (those of this shard only). */
  static initial(namespace: string, shard: number, spec: ModelSpec, weights: ReadonlyArray<{ name: string; shape: number[]; values: Float32Array }>): ShardState {
    return new ShardState(namespace, shard, spec, new Map(weights.map((w) => [w.name, { shape: [...w.shape], values: new Float32Array(w.values) }])), new Map());
  }

  /** A shard restored from its latest committed snapshot: weights, optimizer slots, version and counters. */
  static fromSnapshot(snapshot: ModelSnapshot, spec: ModelSpec): ShardState {
    const variables = new Map(snapshot.tensors.map((t) => [t.name, { shape: [...t.shape], values: decodeTensor(t) }]));
    const slots = new Map<string, Record<string, Float32Array>>();
    let steps = 0;
    for (const tensor of snapshot.optimizerState) {
      if (tensor.name === ':steps') {
        steps = decodeTensor(tensor)[0] ?? 0;
        continue;
      }
      const separator = tensor.name.lastIndexOf(':');
      const variable = tensor.name.slice(0, separator);
      const slot = tensor.name.slice(separator + 1);
      const entry = slots.get(variable) ?? {};
      entry[slot] = decodeTensor(tensor);
      slots.set(variable, entry);
    }
    const state = new ShardState(snapshot.namespace, snapshot.shard, spec, variables, slots);
    state.steps = steps;
    state.version = snapshot.version;
    state.samplesApplied = snapshot.samplesApplied;
    state.updatesApplied = snapshot.updatesApplied;
    state.updatesDroppedStale = snapshot.updatesDroppedStale;
    state.samplesDroppedStale = snapshot.samplesDroppedStale;
    state.deadLettered = snapshot.deadLettered;
    state.lossSum = snapshot.lossSum;
    for (const o of snapshot.appliedOffsets) state.appliedOffsets.set(`${o.topic}:${o.partition}`, { ...o });
    return state;
  }

  /**
   * Takes in one update: counts its dead letters, then applies its mean
   * gradient with the optimizer (clipped to `clipNorm` by global norm over the
   * update's tensors, if set) unless the staleness policy drops it. Every
   * update raises the version by one.
   */
  take(update: ParameterUpdate, staleness: StalenessPolicy, clipNorm: number | undefined): UpdateOutcome {
    const kind = update.sampleCount > 0 ? 'samples' : 'dead';
    for (const range of update.offsets) {
      const last = this.lastTaken.get(`${kind}:${range.topic}:${range.partition}`);
      if (last !== undefined && range.firstOffset <= last) return 'duplicate';
    }
    for (const range of update.offsets) this.lastTaken.set(`${kind}:${range.topic}:${range.partition}`, range.lastOffset);
    const stale = this.stalenessOf(update);
    this.version += 1;
    this.deadLettered += update.deadLettered;
    // Only gradient updates advance the applied offsets: a dead-letter count may run ahead of the batches before it,
    // and a worker waiting for its update to show in a snapshot must not be released by it.
    for (const range of kind === 'samples' ? update.offsets : []) {
      const key = `${range.topic}:${range.partition}`;
      const known = this.appliedOffsets.get(key);
      if (!known || range.lastOffset > known.offset) this.appliedOffsets.set(key, { topic: range.topic, partition: range.partition, offset: range.lastOffset });
    }
    if (update.firstAppendTime > 0) this.pendingAppendTimes.push(update.firstAppendTime);
    if (update.sampleCount === 0 || update.tensors.length === 0) return 'counted';
    if (stale > staleness.bound && staleness.policy === 'drop') {
      this.updatesDroppedStale += 1;
      this.samplesDroppedStale += update.sampleCount;
      return 'dropped';
    }
    const scale = stale > staleness.bound && staleness.policy === 'scale' ? 1 / (1 + stale) : 1;
    const gradients = update.tensors.map((tensor) => {
      const variable = this.variables.get(tensor.name);
      if (!variable) throw new RangeError(`shard ${this.shard} has no variable '${tensor.name}'`);
      const values = decodeTensor(tensor);
      if (values.length !== variable.values.length) throw new RangeError(`update for '${tensor.name}' has ${values.length} elements, the variable ${variable.values.length}`);
      for (let i = 0; i < values.length; i++) values[i]! /= update.sampleCount;
      return { name: tensor.name, values };
    });
    if (clipNorm !== undefined) {
      let squares = 0;
      for (const { values } of gradients) for (const v of values) squares += v * v;
      const norm = Math.sqrt(squares);
      if (norm > clipNorm) for (const { values } of gradients) for (let i = 0; i < values.length; i++) values[i]! *= clipNorm / norm;
    }
    this.steps += 1;
    for (const { name, values } of gradients) this.optimizer.apply(this.variables.get(name)!.values, values, this.slots.get(name)!, this.steps, scale);
    this.updatesApplied += 1;
    this.samplesApplied += update.sampleCount;
    this.lossSum += update.lossSum;
    return 'applied';
  }

  /** The append times of the updates taken in since the last snapshot, and a fresh window. */
  takeAppendTimes(): number[] {
    const times = this.pendingAppendTimes;
    this.pendingAppendTimes = [];
    return times;
  }

  /** How many versions behind the shard an update was computed: the server's version minus its base version. */
  stalenessOf(update: ParameterUpdate): number {
    return Math.max(0, this.version - update.baseVersion);
  }

  /** The snapshot of the shard as it is now. `appendTimes`: those it is the first to include (for freshnessMs). */
  snapshot(now: number, shardCount: number, appendTimes: readonly number[]): ModelSnapshot {
    const oldest = appendTimes.reduce((a, b) => Math.min(a, b), Number.POSITIVE_INFINITY);
    const freshnessMs = Number.isFinite(oldest) ? Math.max(0, now - oldest) : 0;
    const optimizerState = [...this.slots].flatMap(([name, slots]) => Object.entries(slots).map(([slot, values]) => encodeTensor(`${name}:${slot}`, this.variables.get(name)!.shape, values, 'FP32')));
    optimizerState.push(encodeTensor(':steps', [], Float32Array.of(this.steps), 'FP32'));
    return {
      namespace: this.namespace,
      shard: this.shard,
      shardCount,
      version: this.version,
      modelConfig: JSON.stringify(this.spec),
      tensors: [...this.variables].map(([name, { shape, values }]) => encodeTensor(name, shape, values, 'FP32')),
      optimizerState,
      samplesApplied: this.samplesApplied,
      updatesApplied: this.updatesApplied,
      updatesDroppedStale: this.updatesDroppedStale,
      samplesDroppedStale: this.samplesDroppedStale,
      deadLettered: this.deadLettered,
      lossSum: this.lossSum,
      appliedOffsets: [...this.appliedOffsets.values()],
      freshnessMs,
      createdAt: now,
    };
  }
}
