import type { ModelSnapshot } from '../../schemas/types.js';

/**
 * The served model: an exponential moving average of a shard's weights over its updates (Polyak averaging), kept by
 * the parameter server next to the weights the workers train on, and what `export`, `evaluate` and the demo use.
 * Training at a constant learning rate on a stream leaves the weights wandering around the optimum (more so with
 * asynchronous workers, whose updates are stale); their average over the last ~1 / (1 − decay) updates is closer to
 * it and far steadier from one run to the next.
 */

/** The optimizer slot that holds the average, saved in snapshots as `<variable>:average`. */
export const averageSlot = 'average';

/**
 * The decay of update number `step` (0 for the first): `decay`, warmed up as (1 + step) / (10 + step) so that the
 * first updates are not averaged with the initial random weights for long.
 */
export function averageDecayAt(decay: number, step: number): number {
  return Math.min(decay, (1 + step) / (10 + step));
}

/** One update's change to a shard's weights, kept while an update made before it may still arrive. */
interface RecentChange {
  /** Where the update lies on the path the workers trained: when it was made. */
  readonly position: number;
  /** Its decay (that of its steps). */
  readonly decay: number;
  /** What its change weighs in the lag: the decays of it and of every update made after it. */
  weight: number;
  /** Per variable, the change. */
  readonly changes: ReadonlyMap<string, Float32Array>;
}

/** Floats of changes a {@link PathAverage} keeps at most (32 MB): a larger shard keeps fewer updates. */
const keptChangeFloats = 8_000_000;

/**
 * A shard's served average along the path the workers trained, whatever the order the shard applies their updates in.
 *
 * A lane commits its updates in bunches (a checkpoint's transaction holds up to 8), so a shard applies a few of one
 * lane, then a few of the next, though the worker made them one lane after the other. Each weight vector between is
 * a sum of updates that no worker ever held, off the path by up to dozens of other updates: an average of those,
 * taken in the order applied, was 10–40 times worse than the same average along the path on the bench's MLP
 * (BENCHMARKS.md, *The served average along the workers' path*).
 *
 * The average of the weights W_k after updates k = 1…n along the path, each of decay D_k (the initial weights
 * weighing what decays to them), is A = W_n − Σ_j (Π_{l ≥ j} D_l) Δ_j, with Δ_j the change of update j: an update
 * is missing from every vector before it. So the shard keeps that lag, in float64, and places each update in it by
 * when it was made (`position`): only the updates made before it decay by it. In the order made, that is one pass
 * over the weights per update, as the plain moving average; an update made before others already applied also sums
 * their changes, which the newest updates keep for (as many as {@link keptChangeFloats} allows, at most 256). An
 * update made before all of those takes the place after them.
 */
export class PathAverage {
  /** Per variable, the lag: the weights less their average. */
  private readonly lag = new Map<string, Float64Array>();
  /** The newest updates, in path order. */
  private readonly recent: RecentChange[] = [];
  private readonly keep: number;

  /** `weights` and their `averages` (per variable; without one, the average starts at the weights). */
  constructor(weights: ReadonlyMap<string, { readonly values: Float32Array }>, averages: ReadonlyMap<string, Float32Array | undefined>) {
    let floats = 0;
    for (const [name, { values }] of weights) {
      const average = averages.get(name);
      const lag = new Float64Array(values.length);
      if (average) for (let i = 0; i < lag.length; i++) lag[i] = values[i]! - average[i]!;
      this.lag.set(name, lag);
      floats += values.length;
    }
    this.keep = Math.max(1, Math.min(256, Math.floor(keptChangeFloats / Math.max(1, floats))));
  }

  /** An update made at `position` changed the weights by `changes` (per variable; kept, not to be changed), with decay `decay`. */
  take(position: number, changes: ReadonlyMap<string, Float32Array>, decay: number): void {
    let at = this.recent.length;
    while (at > 0 && this.recent[at - 1]!.position > position) at--;
    const later = this.recent.slice(at);
    let weight = decay;
    for (const { decay: after } of later) weight *= after;
    for (const [name, lag] of this.lag) {
      // Everything decays by this update but the updates made after it, whose share is given back.
      const change = changes.get(name);
      if (change) for (let i = 0; i < lag.length; i++) lag[i] = decay * lag[i]! + weight * change[i]!;
      else for (let i = 0; i < lag.length; i++) lag[i]! *= decay;
      for (const { weight: w, changes: theirs } of later) {
        const their = theirs.get(name);
        if (their) for (let i = 0; i < lag.length; i++) lag[i]! += (1 - decay) * w * their[i]!;
      }
    }
    for (let j = 0; j < at; j++) this.recent[j]!.weight *= decay;
    this.recent.splice(at, 0, { position, decay, weight, changes });
    if (this.recent.length > this.keep) this.recent.shift();
  }

  /** The average: the weights less the lag. */
  averages(weights: ReadonlyMap<string, { readonly values: Float32Array }>): Map<string, Float32Array> {
    const result = new Map<string, Float32Array>();
    for (const [name, { values }] of weights) {
      const lag = this.lag.get(name)!;
      const average = new Float32Array(values.length);
      for (let i = 0; i < average.length; i++) average[i] = values[i]! - lag[i]!;
      result.set(name, average);
    }
    return result;
  }
}

/**
 * The snapshot with its weights replaced by their averages, where it holds them (from a server with
 * `model.averageDecay` > 0): what a reader serves. A snapshot without averages is returned as it is.
 */
export function servedSnapshot(snapshot: ModelSnapshot): ModelSnapshot {
  const averages = new Map(snapshot.optimizerState.filter(({ name }) => name.endsWith(`:${averageSlot}`)).map((tensor) => [tensor.name.slice(0, -averageSlot.length - 1), tensor]));
  if (averages.size === 0) return snapshot;
  return { ...snapshot, tensors: snapshot.tensors.map((tensor) => ({ ...(averages.get(tensor.name) ?? tensor), name: tensor.name })) };
}
