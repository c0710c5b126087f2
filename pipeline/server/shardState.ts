import { decodeTensor, encodeTensor } from '../../schemas/tensorCodec.js';
import type { FeatureMoments, ModelSnapshot, ParameterUpdate, PrequentialWindow } from '../../schemas/types.js';
import { addWindows } from '../../operators/prequential.js';
import type { ModelSpec } from '../common/model.js';
import { serverOptimizer, type Optimizer } from '../common/optimizers.js';
import { assertScalingFits, emptyMoments, mergeMoments } from '../common/featureMoments.js';
import { countStaleness } from '../common/staleness.js';
import { averageDecayAt, averageSlot, PathAverage } from '../common/averaging.js';
import { localStepsIn } from '../common/config.js';

/** What a shard does with an update whose staleness (server version − baseVersion) is beyond the bound. */
export interface StalenessPolicy {
  /**
   * `apply` as is, `scale` the learning rate by 1 / (1 + staleness), or `drop` (counted). `retrain`: the workers keep
   * the bound (see the experiment's `server.staleness`), and the shard applies what comes as is.
   */
  readonly policy: 'retrain' | 'apply' | 'scale' | 'drop';
  /** Staleness up to this is applied as is. */
  readonly bound: number;
}

/** Why a shard refuses an update record. Each refused record is counted by reason and dead-lettered to `<ns>.ps.dlq`. */
export const refusalReasons = {
  /** It covers input offsets the shard has already taken in. */
  DUPLICATE: 'repeats input offsets already taken in',
  /** The bytes are not a ParameterUpdate. */
  DECODE: 'cannot be decoded',
  /** With `updateSigning`: no signature, a key the namespace does not have, or a signature that does not verify. */
  SIGNATURE: 'is not signed with one of the namespace keys',
  /** It belongs to another experiment namespace. */
  NAMESPACE: 'is for another namespace',
  /** It names another shard than the partition it arrived on. */
  SHARD: 'is for another shard',
  /** A tensor names a variable the shard does not have. */
  UNKNOWN_VARIABLE: 'names an unknown variable',
  /** A tensor has the wrong number of elements, or cannot be decoded. */
  SHAPE: 'has a tensor of the wrong shape',
  /** A gradient is NaN or infinite. */
  NON_FINITE: 'has a non-finite gradient',
  /** A count is negative, or a mean gradient element is beyond `server.maxAbsGradient`. */
  ABSURD: 'has absurd values',
} as const;

export type RefusalReason = keyof typeof refusalReasons;

/** Refusals for what an update of this shard carries: its input offsets count as taken in (see {@link ShardState.take}). */
const takenInWhenRefused: ReadonlySet<RefusalReason> = new Set(['UNKNOWN_VARIABLE', 'SHAPE', 'NON_FINITE', 'ABSURD']);

/** What became of one update record: applied, dropped as stale, counted (dead letters only), or refused with a reason. */
export type TakeResult =
  | { readonly outcome: 'applied' | 'dropped' | 'counted' }
  | { readonly outcome: 'refused'; readonly reason: RefusalReason; readonly detail: string; readonly sampleCount: number };

export type UpdateOutcome = TakeResult['outcome'];

/** The largest mean gradient element a shard accepts by default; larger ones are refused as ABSURD. Its square stays finite in float32 (Adam's second moment). */
export const defaultMaxAbsGradient = 1e15;

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
  updatesRefused = 0;
  samplesRefused = 0;
  readonly refusedByReason: Record<string, number> = {};
  /** The staleness of the updates with samples taken in (applied or dropped), in power-of-two buckets; see `staleness.ts`. */
  readonly stalenessCounts: number[] = [];
  stalenessMax = 0;
  /** With `model.normalize`, on shard 0: the merged moments of the raw features of every applied sample. */
  featureMoments: FeatureMoments | null;
  /** On shard 0: the prequential scores of the newest event-time windows, by start. */
  private readonly prequential = new Map<number, PrequentialWindow>();
  /** On shard 0: the latest event time scored. */
  private lastEventTime = 0;
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
  /** `updatesApplied` at each recent version, for staleness. */
  private readonly appliedAt = new AppliedAt();
  /** Appended-at times (the oldest sample of each) of the updates taken in since the last snapshot, for freshness. */
  private pendingAppendTimes: number[] = [];
  /** With `model.averageDecay`: the served average, along the path the workers trained. */
  private readonly average: PathAverage | undefined;

  private constructor(
    readonly namespace: string,
    readonly shard: number,
    readonly spec: ModelSpec,
    readonly variables: Map<string, { shape: number[]; values: Float32Array }>,
    readonly slots: Map<string, Record<string, Float32Array>>,
    /** The experiment's `batchSize`: an update of more samples holds several of a worker's steps (`stepsPerUpdate`). */
    private readonly stepSamples: number,
  ) {
    this.optimizer = serverOptimizer(spec);
    this.featureMoments = spec.normalize && shard === 0 ? emptyMoments(spec.features) : null;
    for (const [name, { values }] of variables) {
      if (!slots.has(name)) slots.set(name, Object.fromEntries(this.optimizer.slots.map((slot) => [slot, new Float32Array(values.length)])));
    }
    // The served average starts at the weights (a snapshot from before averaging has none).
    this.average = spec.averageDecay > 0 ? new PathAverage(variables, new Map([...variables.keys()].map((name) => [name, slots.get(name)![averageSlot]]))) : undefined;
  }

  /**
   * A fresh shard from the model's seeded initial weights (those of this shard only). `stepSamples`: the experiment's
   * `batchSize` (without it, every update counts as one step).
   */
  static initial(namespace: string, shard: number, spec: ModelSpec, weights: ReadonlyArray<{ name: string; shape: number[]; values: Float32Array }>, stepSamples = Number.POSITIVE_INFINITY): ShardState {
    return new ShardState(namespace, shard, spec, new Map(weights.map((w) => [w.name, { shape: [...w.shape], values: new Float32Array(w.values) }])), new Map(), stepSamples);
  }

  /** A shard restored from its latest committed snapshot: weights, optimizer slots, version and counters. */
  static fromSnapshot(snapshot: ModelSnapshot, spec: ModelSpec, stepSamples = Number.POSITIVE_INFINITY): ShardState {
    assertScalingFits(snapshot, spec.normalize);
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
    const state = new ShardState(snapshot.namespace, snapshot.shard, spec, variables, slots, stepSamples);
    state.steps = steps;
    state.version = snapshot.version;
    state.samplesApplied = snapshot.samplesApplied;
    state.updatesApplied = snapshot.updatesApplied;
    state.updatesDroppedStale = snapshot.updatesDroppedStale;
    state.samplesDroppedStale = snapshot.samplesDroppedStale;
    state.deadLettered = snapshot.deadLettered;
    state.lossSum = snapshot.lossSum;
    state.updatesRefused = snapshot.updatesRefused;
    state.samplesRefused = snapshot.samplesRefused;
    Object.assign(state.refusedByReason, snapshot.refusedByReason);
    if (state.featureMoments && snapshot.featureMoments) state.featureMoments = snapshot.featureMoments;
    state.stalenessCounts.push(...snapshot.stalenessCounts);
    state.takeScores(snapshot.prequential);
    state.stalenessMax = snapshot.stalenessMax;
    for (const o of snapshot.appliedOffsets) {
      state.appliedOffsets.set(`${o.topic}:${o.partition}`, { ...o });
      // A restored shard still refuses a repeat of what it applied before the restart.
      state.lastTaken.set(`samples:${o.topic}:${o.partition}`, o.offset);
    }
    return state;
  }

  /**
   * Takes in one update record: refuses it (see {@link refusalReasons}) or
   * counts its dead letters, then applies its mean gradient with the optimizer
   * (clipped to `clipNorm` by global norm over the update's tensors, if set)
   * unless the staleness policy drops it. Every record, refused or not, raises
   * the version by one, so versions strictly increase from snapshot to snapshot.
   */
  take(update: ParameterUpdate, staleness: StalenessPolicy, clipNorm: number | undefined, maxAbsGradient = defaultMaxAbsGradient): TakeResult {
    this.appliedAt.remember(this.version, this.updatesApplied);
    const checked = this.check(update, maxAbsGradient);
    if ('reason' in checked) {
      // An update of this shard refused for its values (not a repeat, nor another shard's or namespace's) is taken in
      // all the same: its worker, waiting for it to show in a snapshot, must not wait forever.
      if (takenInWhenRefused.has(checked.reason) && update.sampleCount > 0) this.takeInOffsets(update, 'samples');
      return this.refuse(checked.reason, checked.detail, update.sampleCount);
    }
    this.takeInOffsets(update, update.sampleCount > 0 ? 'samples' : 'dead');
    const stale = this.stalenessOf(update);
    this.version += 1;
    this.deadLettered += update.deadLettered;
    if (update.firstAppendTime > 0) this.pendingAppendTimes.push(update.firstAppendTime);
    if (update.sampleCount === 0) return { outcome: 'counted' };
    countStaleness(this.stalenessCounts, stale);
    // Scores are measured before the step: they count whether or not the update is applied.
    if (this.shard === 0) this.takeScores(update.prequential);
    this.stalenessMax = Math.max(this.stalenessMax, stale);
    if (stale > staleness.bound && staleness.policy === 'drop') {
      this.updatesDroppedStale += 1;
      this.samplesDroppedStale += update.sampleCount;
      return { outcome: 'dropped' };
    }
    const scale = stale > staleness.bound && staleness.policy === 'scale' ? 1 / (1 + stale) : 1;
    const gradients = checked.gradients;
    if (clipNorm !== undefined) {
      let squares = 0;
      for (const { values } of gradients) for (const v of values) squares += v * v;
      const norm = Math.sqrt(squares);
      if (norm > clipNorm) for (const { values } of gradients) for (let i = 0; i < values.length; i++) values[i]! *= clipNorm / norm;
    }
    // The optimizer's steps (one per update with gradients; with deltas, a worker's steps, which the average counts).
    const first = this.steps;
    this.steps += localStepsIn(update.sampleCount, this.stepSamples);
    const deltas = this.spec.updates === 'deltas';
    // With gradients the optimizer decides the change: the weights before it are kept to tell.
    const before = this.average && !deltas ? new Map(gradients.map(({ name }) => [name, this.variables.get(name)!.values.slice()])) : undefined;
    for (const { name, values } of gradients) this.optimizer.apply(this.variables.get(name)!.values, values, this.slots.get(name)!, this.steps, scale);
    if (this.average) {
      // As if the average took in the update's weights after each of its steps: it lags the same number of samples
      // however many steps an update holds.
      let decay = 1;
      for (let step = first; step < this.steps; step++) decay *= averageDecayAt(this.spec.averageDecay, step);
      const changes = new Map<string, Float32Array>();
      for (const { name, values } of gradients) {
        const was = before?.get(name);
        const after = this.variables.get(name)!.values;
        // A delta is the change, to the float32 rounding of the sum (which the lag forgets as it decays).
        if (was) for (let i = 0; i < was.length; i++) was[i] = after[i]! - was[i]!;
        else if (scale !== 1) for (let i = 0; i < values.length; i++) values[i]! *= scale;
        changes.set(name, was ?? values);
      }
      // A worker's deltas lie on its path by when it made them; gradients are stepped on the shard's own weights.
      this.average.take(deltas ? update.createdAt : this.updatesApplied, changes, decay);
    }
    if (this.featureMoments && update.featureMoments) this.featureMoments = mergeMoments(this.featureMoments, update.featureMoments);
    this.updatesApplied += 1;
    this.samplesApplied += update.sampleCount;
    this.lossSum += update.lossSum;
    return { outcome: 'applied' };
  }

  private takeScores(windows: readonly PrequentialWindow[]): void {
    addWindows(this.prequential, windows, keptPrequentialWindows);
    for (const window of windows) this.lastEventTime = Math.max(this.lastEventTime, window.lastEventTime);
  }

  /** Records the input offsets an update covers as taken in: repeats of them are refused from now on. */
  private takeInOffsets(update: ParameterUpdate, kind: 'samples' | 'dead'): void {
    for (const range of update.offsets) this.lastTaken.set(`${kind}:${range.topic}:${range.partition}`, range.lastOffset);
    // Only gradient updates advance the applied offsets: a dead-letter count may run ahead of the batches before it,
    // and a worker waiting for its update to show in a snapshot must not be released by it.
    for (const range of kind === 'samples' ? update.offsets : []) {
      const key = `${range.topic}:${range.partition}`;
      const known = this.appliedOffsets.get(key);
      if (!known || range.lastOffset > known.offset) this.appliedOffsets.set(key, { topic: range.topic, partition: range.partition, offset: range.lastOffset });
    }
  }

  /** Counts a refused update record (one that could not even be decoded has no samples to count) and raises the version. */
  refuse(reason: RefusalReason, detail: string, sampleCount = 0): TakeResult {
    const samples = Number.isSafeInteger(sampleCount) && sampleCount > 0 ? sampleCount : 0;
    this.version += 1;
    this.updatesRefused += 1;
    this.samplesRefused += samples;
    this.refusedByReason[reason] = (this.refusedByReason[reason] ?? 0) + 1;
    return { outcome: 'refused', reason, detail, sampleCount: samples };
  }

  /** Everything that makes an update unusable, found before any state changes; else its mean gradients. */
  private check(update: ParameterUpdate, maxAbsGradient: number): { readonly gradients: Array<{ name: string; values: Float32Array }> } | { readonly reason: RefusalReason; readonly detail: string } {
    if (update.namespace !== this.namespace) return { reason: 'NAMESPACE', detail: `namespace '${update.namespace}', this shard's is '${this.namespace}'` };
    if (update.shard !== this.shard) return { reason: 'SHARD', detail: `shard ${update.shard} arrived at shard ${this.shard}` };
    if (update.sampleCount < 0 || update.deadLettered < 0) return { reason: 'ABSURD', detail: `sampleCount ${update.sampleCount}, deadLettered ${update.deadLettered}` };
    const kind = update.sampleCount > 0 ? 'samples' : 'dead';
    for (const range of update.offsets) {
      const last = this.lastTaken.get(`${kind}:${range.topic}:${range.partition}`);
      if (last !== undefined && range.firstOffset <= last) return { reason: 'DUPLICATE', detail: `${range.topic}[${range.partition}]@${range.firstOffset}-${range.lastOffset}, already taken in up to ${last}` };
    }
    const moments = this.checkMoments(update) ?? checkScores(update);
    if (moments) return moments;
    const gradients: Array<{ name: string; values: Float32Array }> = [];
    for (const tensor of update.sampleCount > 0 ? update.tensors : []) {
      const variable = this.variables.get(tensor.name);
      if (!variable) return { reason: 'UNKNOWN_VARIABLE', detail: `'${tensor.name}'` };
      let values: Float32Array;
      try {
        values = decodeTensor(tensor);
      } catch (error) {
        return { reason: 'SHAPE', detail: (error as Error).message };
      }
      if (values.length !== variable.values.length) return { reason: 'SHAPE', detail: `'${tensor.name}' has ${values.length} elements, the variable ${variable.values.length}` };
      for (let i = 0; i < values.length; i++) {
        const mean = values[i]! / update.sampleCount;
        if (!Number.isFinite(mean)) return { reason: 'NON_FINITE', detail: `'${tensor.name}'[${i}] is ${values[i]}` };
        if (Math.abs(mean) > maxAbsGradient) return { reason: 'ABSURD', detail: `'${tensor.name}'[${i}] has a mean gradient of ${mean}, beyond ${maxAbsGradient}` };
        values[i] = mean;
      }
      gradients.push({ name: tensor.name, values });
    }
    return { gradients };
  }

  /** What makes an update's feature moments unusable: another feature count, values that are not finite, a count that is not its samples'. */
  private checkMoments(update: ParameterUpdate): { readonly reason: RefusalReason; readonly detail: string } | undefined {
    const moments = update.featureMoments;
    if (!moments || update.sampleCount === 0) return undefined;
    if (!this.featureMoments) return { reason: 'UNKNOWN_VARIABLE', detail: `feature moments, which shard ${this.shard} of this model does not keep` };
    const features = this.featureMoments.mean.length;
    if (moments.mean.length !== features || moments.m2.length !== features) {
      return { reason: 'SHAPE', detail: `feature moments of ${moments.mean.length} means and ${moments.m2.length} M2s, the model has ${features} features` };
    }
    const readings = update.sampleCount * (this.spec.kind === 'timeseries' ? this.spec.window : 1);
    if (moments.count !== readings) return { reason: 'ABSURD', detail: `feature moments over ${moments.count} readings, the update's samples have ${readings}` };
    const bad = [...moments.mean, ...moments.m2].findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) return { reason: 'NON_FINITE', detail: `feature moment ${bad % features} of ${bad < features ? 'mean' : 'm2'} is ${[...moments.mean, ...moments.m2][bad]}` };
    if (moments.m2.some((v) => v < 0)) return { reason: 'ABSURD', detail: 'a negative sum of squared differences in the feature moments' };
    return undefined;
  }

  /** The append times of the updates taken in since the last snapshot, and a fresh window. */
  takeAppendTimes(): number[] {
    const times = this.pendingAppendTimes;
    this.pendingAppendTimes = [];
    return times;
  }

  /**
   * How many updates changed the shard's weights since the version an update was computed on. Only applied updates
   * count: a dead-letter count, a refused or a dropped update raises the version but leaves the weights. A base
   * version from before the shard's restore (or from before the versions it remembers) counts from there.
   */
  stalenessOf(update: ParameterUpdate): number {
    this.appliedAt.remember(this.version, this.updatesApplied);
    return Math.max(0, this.updatesApplied - this.appliedAt.at(update.baseVersion, this.updatesApplied));
  }

  /**
   * The snapshot of the shard as it is now. `appendTimes`: those it is the first to include (for freshnessMs);
   * `updatesOffset`: the first offset of the shard's updates partition it has not taken in.
   */
  snapshot(now: number, shardCount: number, appendTimes: readonly number[], updatesOffset: number, prequential: PrequentialSettings = defaultPrequential): ModelSnapshot {
    const oldest = appendTimes.reduce((a, b) => Math.min(a, b), Number.POSITIVE_INFINITY);
    const freshnessMs = Number.isFinite(oldest) ? Math.max(0, now - oldest) : 0;
    for (const [name, average] of this.average?.averages(this.variables) ?? []) this.slots.get(name)![averageSlot] = average;
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
      updatesOffset,
      updatesRefused: this.updatesRefused,
      samplesRefused: this.samplesRefused,
      refusedByReason: { ...this.refusedByReason },
      featureMoments: this.featureMoments,
      stalenessCounts: [...this.stalenessCounts],
      stalenessMax: this.stalenessMax,
      prequential: [...this.prequential.values()].sort((a, b) => a.start - b.start),
      prequentialWindowMs: this.shard === 0 ? prequential.windowMs : 0,
      eventTimeWatermark: this.lastEventTime > 0 ? this.lastEventTime - prequential.maxOutOfOrdernessMs : 0,
    };
  }
}

/** What makes an update's prequential scores unusable: windows that do not hold its samples, or values that cannot be. */
function checkScores(update: ParameterUpdate): { readonly reason: RefusalReason; readonly detail: string } | undefined {
  if (update.prequential.length === 0) return undefined;
  const scored = update.prequential.reduce((sum, w) => sum + w.samples, 0);
  if (scored !== update.sampleCount) return { reason: 'ABSURD', detail: `prequential windows of ${scored} samples, the update has ${update.sampleCount}` };
  const bad = update.prequential.find((w) => ![w.lossSum, w.absErrorSum, w.squaredErrorSum].every((v) => Number.isFinite(v) && v >= 0) || w.samples < 0 || w.correct < 0 || w.correct > w.samples);
  return bad ? { reason: 'ABSURD', detail: `the prequential window from ${bad.start} has impossible scores` } : undefined;
}

/** How many of the newest prequential windows shard 0 keeps in its snapshots. */
export const keptPrequentialWindows = 120;

/** The prequential windows' size and allowed out-of-orderness (the experiment's `prequential`). */
export interface PrequentialSettings {
  readonly windowMs: number;
  readonly maxOutOfOrdernessMs: number;
}

const defaultPrequential: PrequentialSettings = { windowMs: 10_000, maxOutOfOrdernessMs: 5_000 };

/** How many versions {@link AppliedAt} remembers: staleness beyond it counts from the oldest it has. */
const rememberedVersions = 4_096;

/** A shard's `updatesApplied` at each of its last versions. */
class AppliedAt {
  private readonly counts = new Map<number, number>();

  remember(version: number, updatesApplied: number): void {
    if (this.counts.has(version)) return;
    this.counts.set(version, updatesApplied);
    if (this.counts.size > rememberedVersions) this.counts.delete(this.counts.keys().next().value!);
  }

  /** `updatesApplied` at `version`; the oldest remembered for an older one, `current` for one not reached yet. */
  at(version: number, current: number): number {
    const exact = this.counts.get(version);
    if (exact !== undefined) return exact;
    const [oldestVersion, oldestCount] = this.counts.entries().next().value ?? [Number.POSITIVE_INFINITY, current];
    return version < oldestVersion ? oldestCount : current;
  }
}
