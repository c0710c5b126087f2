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

/** Moves `average` toward `weights` by one update of decay `decay`, in place. */
export function updateAverage(average: Float32Array, weights: Float32Array, decay: number): void {
  for (let i = 0; i < average.length; i++) average[i] = decay * average[i]! + (1 - decay) * weights[i]!;
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
