import type { ModelSpec } from '../common/model.js';
import type { OptimizerSpec } from '../common/optimizers.js';

/**
 * Asynchrony begets momentum (Mitliagkas et al., 2016): a worker whose steps miss the last τ updates of the other
 * workers moves the model as if its optimizer had an extra momentum of about τ / (1 + τ), which adds to its own. A
 * worker that sends deltas lowers its own optimizer's momentum by as much, so that the two together stay near what
 * the spec asks: β_eff = max(0, β − τ / (1 + τ)). With one worker τ is 0 and the optimizer is the spec's own: a
 * replay or a single worker is unchanged.
 *
 * Measured in process with the real replicas and server shards (two workers, 200,000 simulated readings, Adam at
 * 0.001, snapshots reaching the workers 16 updates late): holdout loss 5.2·10⁻³ with β1 = 0.9 and 3.8·10⁻³ with 0,
 * against 2.7·10⁻³ for one worker, whose loss β1 = 0 leaves as it was.
 */
export function momentumUnderStaleness(spec: OptimizerSpec, foreignStaleness: number): OptimizerSpec {
  const lowered = (beta: number) => Math.max(0, beta - foreignStaleness / (1 + foreignStaleness));
  switch (spec.kind) {
    case 'adam':
      return foreignStaleness > 0 ? { ...spec, beta1: lowered(spec.beta1) } : spec;
    case 'momentum':
      return foreignStaleness > 0 ? { ...spec, momentum: lowered(spec.momentum) } : spec;
    default:
      return spec;
  }
}

/**
 * Whether a worker lowers its momentum under asynchrony (`model.asyncMomentum`), given the local steps its recent
 * updates held (`auto` decides by them: a live stream's updates are often cut to one step by `batchMaxWaitMs`, a
 * backlog's hold `stepsPerUpdate`). With one step per update, lowering it brings two workers' holdout loss from
 * about 1.9 to 1.2 times a sequential learner's; with four, a worker's own steps between updates are sequential, and
 * its momentum averages their noise: keeping it brings two workers from about 1.8 to 1.1 times (README, *Momentum
 * under asynchrony*).
 */
export function lowersMomentum(setting: ModelSpec['asyncMomentum'], stepsPerUpdate: number): boolean {
  return setting === 'lower' || (setting === 'auto' && stepsPerUpdate < 1.5);
}

/** How fast the estimate of the steps per update follows the newest updates. */
const stepsDecay = 0.9;

/**
 * The local steps a worker's recent updates held: a moving average from the first update's count (1 before it; no
 * step before the first update misses another worker's, so nothing depends on it then).
 */
export class StepsPerUpdate {
  private estimate: number | undefined;

  get value(): number {
    return this.estimate ?? 1;
  }

  updated(steps: number): void {
    this.estimate = this.estimate === undefined ? steps : stepsDecay * this.estimate + (1 - stepsDecay) * steps;
  }
}

/** Where a local step stood when it was taken: shard 0's applied updates in the replica, and the worker's own updates among them. */
export interface StepMark {
  readonly applied: number;
  readonly ownBefore: number;
}

/** How fast the estimate follows the newest steps (per step of the worker). */
const estimateDecay = 0.9;

/**
 * Estimates τ, the updates of other workers that a worker's steps miss: for each of its own updates, once shard 0's
 * snapshot holds it, the updates the shard applied between the snapshot the step was taken on and this one, less the
 * worker's own among them. An exponential moving average over the worker's updates.
 */
export class ForeignStaleness {
  private estimate = 0;
  private ownApplied = 0;

  get value(): number {
    return this.estimate;
  }

  /** A step taken on a replica whose shard 0 snapshot had applied `applied` updates. */
  mark(applied: number): StepMark {
    return { applied, ownBefore: this.ownApplied };
  }

  /** Shard 0's snapshot, which has applied `applied` updates, holds the own steps `marks` for the first time. */
  reflected(applied: number, marks: readonly StepMark[]): void {
    this.ownApplied += marks.length;
    for (const mark of marks) {
      const foreign = Math.max(0, applied - mark.applied - (this.ownApplied - mark.ownBefore));
      this.estimate = estimateDecay * this.estimate + (1 - estimateDecay) * foreign;
    }
  }
}
