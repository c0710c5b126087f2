import type { FeatureMoments, ModelSnapshot } from '../../schemas/types.js';
import { SnapshotMismatchError } from './errors.js';

/**
 * Online feature scaling (`model.normalize`): per feature, the running mean and the sum of squared differences
 * from it (M2) of the raw inputs. Workers compute each batch's moments, the parameter server merges them into
 * shard 0 with Chan's parallel formula (exact, whatever the order and grouping), and every reader scales inputs by
 * the merged moments: x' = (x − mean) / scale.
 */

/** Moments of nothing: the identity scaling. */
export function emptyMoments(features: number): FeatureMoments {
  return { count: 0, mean: new Array<number>(features).fill(0), m2: new Array<number>(features).fill(0) };
}

/**
 * The moments of `values`, read as rows of `features` readings (a sample, or one time step of a time-series
 * sample): one pass per batch with Welford's update, in double precision.
 */
export function momentsOf(values: ArrayLike<number>, features: number): FeatureMoments {
  const moments = emptyMoments(features);
  const rows = Math.floor(values.length / features);
  const { mean, m2 } = moments;
  for (let row = 0; row < rows; row++) {
    const n = row + 1;
    for (let f = 0; f < features; f++) {
      const x = values[row * features + f]!;
      const delta = x - mean[f]!;
      mean[f]! += delta / n;
      m2[f]! += delta * (x - mean[f]!);
    }
  }
  moments.count = rows;
  return moments;
}

/** Chan et al.'s parallel merge: the moments of the union of the two sets of readings. */
export function mergeMoments(a: FeatureMoments, b: FeatureMoments): FeatureMoments {
  if (a.mean.length !== b.mean.length) throw new RangeError(`cannot merge the moments of ${a.mean.length} features with those of ${b.mean.length}`);
  if (b.count === 0) return a;
  if (a.count === 0) return b;
  const count = a.count + b.count;
  const mean = a.mean.map((meanA, f) => meanA + ((b.mean[f]! - meanA) * b.count) / count);
  const m2 = a.m2.map((m2A, f) => {
    const delta = b.mean[f]! - a.mean[f]!;
    return m2A + b.m2[f]! + ((delta * delta * a.count) / count) * b.count;
  });
  return { count, mean, m2 };
}

/**
 * The smallest scale relative to a feature's mean: a feature constant so far (variance 0) or nearly so is divided
 * by at least this share of its magnitude, so it never blows up to huge inputs (nor to NaN).
 */
export const relativeScaleFloor = 1e-3;
/** The smallest scale at all, for a feature that has been 0 so far. */
export const absoluteScaleFloor = 1e-6;

/** How a reader scales inputs: x' = (x − shift) · factor, per feature (float32, as the model takes them). */
export interface Scaling {
  readonly shift: Float32Array;
  readonly factor: Float32Array;
}

/** The scaling the moments give: shift by the mean, divide by the standard deviation (floored, see above). No readings: the identity. */
export function scalingOf(moments: FeatureMoments): Scaling {
  const features = moments.mean.length;
  const shift = new Float32Array(features);
  const factor = new Float32Array(features).fill(1);
  if (moments.count === 0) return { shift, factor };
  for (let f = 0; f < features; f++) {
    const mean = moments.mean[f]!;
    const sd = Math.sqrt(Math.max(0, moments.m2[f]!) / moments.count);
    shift[f] = mean;
    factor[f] = 1 / Math.max(sd, relativeScaleFloor * Math.abs(mean), absoluteScaleFloor);
  }
  return { shift, factor };
}

/** Scales `values` in place, read as rows of `scaling.shift.length` features. */
export function applyScaling(scaling: Scaling, values: Float32Array): void {
  const { shift, factor } = scaling;
  const features = shift.length;
  for (let i = 0; i < values.length; i++) {
    const f = i % features;
    values[i] = (values[i]! - shift[f]!) * factor[f]!;
  }
}

/**
 * A model trained with `normalize` learned on scaled inputs, one trained without it on raw ones: going on with the
 * other setting would feed its weights inputs on another scale. Shard 0's snapshot tells which (it carries the
 * moments when, and only when, the model scales), once it has applied any sample.
 */
export function assertScalingFits(snapshot: ModelSnapshot, normalize: boolean): void {
  if (snapshot.shard !== 0 || snapshot.samplesApplied === 0 || (snapshot.featureMoments !== null) === normalize) return;
  const trained = normalize ? 'without' : 'with';
  throw new SnapshotMismatchError(snapshot, `its model was trained ${trained} feature scaling; set model.normalize: ${!normalize} in the config to go on with it, or train in a new namespace`);
}
