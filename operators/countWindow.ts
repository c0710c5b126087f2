import { asyncScheduler, Observable, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';
import { ConfigError } from '../schemas/errors.js';

/** Options of {@link countWindow}. */
export interface CountWindowOptions {
  /** Where the wait is timed (default: rxjs' `asyncScheduler`). */
  readonly scheduler?: SchedulerLike;
  /**
   * Asked when a partial batch has waited `maxWaitMs`: while it answers true (the records the batch waits for are
   * known to be on their way, say a lane behind its partition's end that is still reading), the batch waits on,
   * `maxWaitMs` at a time, for at most `maxHoldMs` in all.
   */
  readonly moreComing?: () => boolean;
  /** The longest a partial batch waits while {@link moreComing} says more is coming, in ms. Default 10 × `maxWaitMs`. */
  readonly maxHoldMs?: number;
}

/**
 * The micro-batch: batches of at most `size` records (count), flushed once the
 * first record of a batch has waited `maxWaitMs` (ms), so a quiet lane still
 * trains (longer only while `moreComing` says more records are on their way).
 * Empty batches are not emitted; what is left is flushed when the source completes.
 *
 * @example
 * lane.records.pipe(decode(samples, rejected), countWindow(256, 50), concatMap(gradientStep))
 */
export function countWindow<T>(size: number, maxWaitMs: number, options: CountWindowOptions = {}): OperatorFunction<T, T[]> {
  if (!Number.isInteger(size) || size <= 0) throw new ConfigError('countWindow.size', `must be a positive whole number of records, got ${size}`);
  if (!(maxWaitMs > 0)) throw new ConfigError('countWindow.maxWaitMs', `must be a positive number of ms, got ${maxWaitMs}`);
  const { scheduler = asyncScheduler, moreComing, maxHoldMs = 10 * maxWaitMs } = options;
  if (!(maxHoldMs >= 0)) throw new ConfigError('countWindow.maxHoldMs', `must be a number of ms, 0 or more, got ${maxHoldMs}`);
  return (source) =>
    new Observable<T[]>((subscriber) => {
      let batch: T[] = [];
      let openedAt = 0;
      let timer: Subscription | undefined;
      const flush = () => {
        timer?.unsubscribe();
        timer = undefined;
        if (batch.length === 0) return;
        const full = batch;
        batch = [];
        subscriber.next(full);
      };
      const waited = () => {
        timer = undefined;
        if (moreComing?.() && scheduler.now() - openedAt + maxWaitMs <= maxHoldMs) timer = scheduler.schedule(waited, maxWaitMs);
        else flush();
      };
      const subscription = source.subscribe({
        next: (value) => {
          if (batch.length === 0) {
            openedAt = scheduler.now();
            timer = scheduler.schedule(waited, maxWaitMs);
          }
          batch.push(value);
          if (batch.length >= size) flush();
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => {
          flush();
          subscriber.complete();
        },
      });
      return () => {
        timer?.unsubscribe();
        subscription.unsubscribe();
      };
    });
}
