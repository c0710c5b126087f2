import { filter, firstValueFrom, ignoreElements, race, timer, type Observable } from 'rxjs';
import type { Lane } from '../../operators/lane.js';
import type { ModelSnapshot } from '../../schemas/types.js';
import type { LogFn } from '../common/log.js';

/**
 * How long lanes waiting for the warm-up wait without seeing it progress (no snapshot of shard 0 holding more samples
 * than before) before they train all the same: the leading lane may have nothing to read, or be slow to start.
 */
export const warmUpPatienceMs = 5_000;

/**
 * How long the warm-up may hold the other lanes at most, from the first lane that waits: a leading partition that
 * trickles (few devices keyed to it) moves within the patience every time, and would otherwise keep every other lane
 * idle until it has the warm-up's samples (8,192 at 8 samples/s: 17 minutes).
 */
export const warmUpMaxWaitMs = 30_000;

/** The input partition whose lane trains the warm-up alone. */
export const leadingPartition = 0;

/**
 * A job's joint warm-up (`warmupSteps`): one lane, that of the input's partition 0, trains the job's first samples
 * alone, and every other lane (of any worker) waits until shard 0's snapshots hold them, then trains on weights that
 * include them.
 *
 * Why: workers that start together from the initial weights train apart until each sees the other's updates in a
 * snapshot, and early in training two such trajectories lead to different solutions, whose summed deltas are neither
 * (on a broker with Kafka's default group delay, two workers' holdout loss was 3 times a sequential learner's; with
 * this warm-up, median 1.43 over 19 runs: BENCHMARKS.md, *A joint warm-up*). Once the model has been trained jointly
 * for a while, the workers' deltas mostly add up. The wait also keeps a lane that joins a running job, or restarts
 * one, from training on the initial weights before its tail has read a snapshot.
 */
export class WarmUp {
  /** Shard 0's samples applied in the newest snapshot seen. */
  private applied = 0;
  /** Set once the warm-up is over (or given up on): no lane waits any more. */
  private over: boolean;
  /** When the first lane began to wait. */
  private waitingSince: number | undefined;

  constructor(
    /** Samples the leading lane trains alone: `warmupSteps` × `batchSize`; 0 for none. */
    private readonly samples: number,
    /** The replica's snapshots, as it takes them in. */
    private readonly snapshots: Observable<ModelSnapshot>,
    private readonly log: LogFn,
    private readonly patienceMs = warmUpPatienceMs,
    private readonly maxWaitMs = warmUpMaxWaitMs,
  ) {
    this.over = samples <= 0;
    snapshots.subscribe((snapshot) => {
      if (snapshot.shard !== 0) return;
      this.applied = Math.max(this.applied, snapshot.samplesApplied);
      if (this.applied >= this.samples) this.over = true;
    });
  }

  /** Whether the warm-up is over: every lane trains. */
  get done(): boolean {
    return this.over;
  }

  /**
   * Resolves once `lane` may train: at once for the leading lane and after the warm-up, otherwise when shard 0's
   * snapshots hold the warm-up's samples, when they have not moved for the patience, when the warm-up has held lanes
   * for `maxWaitMs` since the first of them began to wait, when the lane ends (revoked), or
   * when `stop` emits or completes (the worker stops; `stopping` then says so).
   */
  async wait(lane: Pick<Lane, 'name' | 'partition' | 'records' | 'revoked'>, stop: Observable<unknown>, stopping: () => boolean): Promise<void> {
    if (this.over || lane.partition === leadingPartition) return;
    const { name } = lane;
    const released = () => lane.revoked || stopping();
    // A revoked lane still passes its buffered windows through here: each ends at once, and says nothing.
    if (released()) return;
    const release = race(stop, lane.records.pipe(ignoreElements()));
    const started = Date.now();
    this.waitingSince ??= started;
    this.log(`${name} waits for the warm-up: the lane of partition ${leadingPartition} trains the first ${this.samples} samples alone (${this.applied} in the snapshots so far)`);
    while (!this.over && !released()) {
      const before = this.applied;
      const progress = this.snapshots.pipe(filter((snapshot) => snapshot.shard === 0 && this.applied > before));
      const left = this.maxWaitMs - (Date.now() - this.waitingSince);
      // The patience (or the warm-up's time left) ends the race by completing without a value, as a release does.
      const moved = left > 0 ? await firstValueFrom(race(progress, release, timer(Math.min(this.patienceMs, left)).pipe(filter(() => false))), { defaultValue: undefined }) : undefined;
      if (moved !== undefined || released() || this.over) continue;
      // The race ran out on the warm-up's time left, or on the patience with no progress: give the warm-up up.
      if (left > this.patienceMs && this.applied !== before) continue;
      const why = left <= this.patienceMs ? `; the warm-up has lasted ${this.maxWaitMs} ms (is partition ${leadingPartition} slow?)` : ` and did not move for ${this.patienceMs} ms (is partition ${leadingPartition} empty?)`;
      this.over = true;
      this.log(`${name} trains without the warm-up: shard 0's snapshots held ${this.applied} of its ${this.samples} samples${why}`);
      return;
    }
    if (this.over) this.log(`${name} trains: the warm-up is over (${this.applied} samples in the snapshots; waited ${Date.now() - started} ms)`);
  }
}
