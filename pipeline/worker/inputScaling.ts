import type { FeatureMoments } from '../../schemas/types.js';
import { emptyMoments, mergeMoments, scalingOf, type Scaling } from '../common/featureMoments.js';

/** A batch's moments, filed under the input offsets it came from, until shard 0's snapshots hold them. */
interface PendingMoments {
  readonly owner: object;
  /** `topic:partition` of the input. */
  readonly key: string;
  readonly lastOffset: number;
  readonly moments: FeatureMoments;
}

/**
 * A replica's feature scaling (`model.normalize`): the moments of shard 0's newest snapshot, merged with those of the
 * replica's own batches that the snapshot does not hold yet (the same bookkeeping as a worker's pending deltas). Each
 * batch's moments are merged before the batch is scaled, so a sequential run (sync mode) scales every batch by the
 * moments of all samples up to and including it, exactly as the server will have merged them.
 */
export class InputScaling {
  private base: FeatureMoments;
  private pending: PendingMoments[] = [];
  /** `base` merged with every pending batch's moments, in order: kept up to date, so a batch costs one merge, not one per pending batch. */
  private merged: FeatureMoments;
  private last: FeatureMoments | undefined;
  private current: Scaling;

  constructor(private readonly features: number) {
    this.base = emptyMoments(features);
    this.merged = this.base;
    this.current = scalingOf(this.base);
  }

  get scaling(): Scaling {
    return this.current;
  }

  /** The moments every current input is scaled by. */
  moments(): FeatureMoments {
    return this.merged;
  }

  /** Merges a batch's moments before the batch is scaled; {@link place} files them. */
  observe(batch: FeatureMoments): void {
    this.last = batch;
    this.current = scalingOf(mergeMoments(this.merged, batch));
  }

  place(owner: object, key: string, lastOffset: number): void {
    if (this.last) {
      this.pending.push({ owner, key, lastOffset, moments: this.last });
      this.merged = mergeMoments(this.merged, this.last);
    }
    this.last = undefined;
  }

  forget(owner: object): void {
    this.pending = this.pending.filter((entry) => entry.owner !== owner);
    this.remerge();
  }

  /** Shard 0's snapshot: its moments, and the last input offset per partition (`topic:partition`) it holds. */
  takeSnapshot(moments: FeatureMoments | null, reflected: ReadonlyMap<string, number>): void {
    if (moments && moments.mean.length !== this.features) throw new RangeError(`the snapshot's feature moments cover ${moments.mean.length} features, the model takes ${this.features}`);
    this.base = moments ?? emptyMoments(this.features);
    this.pending = this.pending.filter((entry) => entry.lastOffset > (reflected.get(entry.key) ?? -1));
    this.remerge();
  }

  /** The same merges in the same order as batch by batch, so the result is the same to the bit. */
  private remerge(): void {
    this.merged = this.pending.reduce((merged, entry) => mergeMoments(merged, entry.moments), this.base);
    this.current = scalingOf(this.merged);
  }
}
