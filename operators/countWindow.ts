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
  /**
   * What takes the batches, when it can be busy with earlier ones (waiting for a snapshot or a commit, say). A partial
   * batch whose wait is over is then held, gathering records up to `size`, until `freed` emits: a consumer that waits
   * gets one fuller batch rather than a queue of small ones, each of which would cost it another wait.
   */
  readonly downstream?: BatchConsumer;
}

/** A consumer of batches that says when it is busy, and when it is free again (see {@link CountWindowOptions.downstream}). */
export interface BatchConsumer {
  busy(): boolean;
  readonly freed: Observable<void>;
}

/**
 * How a window gathers its values as they come, instead of into an array. A worker lane decodes each record into
 * its window's columns on arrival: no record object then lives until the window trains (they stayed alive for up to
 * `maxInFlight` records per lane, and the garbage collector copied and promoted them).
 */
export interface WindowCollector<T, W> {
  /** A new, empty window, for at most `size` values. */
  open(size: number): W;
  add(window: W, value: T): void;
}

const intoArray: WindowCollector<unknown, unknown[]> = {
  open: () => [],
  add: (window, value) => window.push(value),
};

/**
 * The micro-batch: batches of at most `size` records (count), flushed once the
 * first record of a batch has waited `maxWaitMs` (ms), so a quiet lane still
 * trains (longer only while `moreComing` says more records are on their way);
 * with `maxWaitMs` `Infinity`, by count alone; while a `downstream` is busy, a
 * partial batch gathers on until it is free. Empty batches are not emitted;
 * what is left is flushed when the source completes. A batch is an array, or
 * what `collect` gathers the values into.
 *
 * @example
 * lane.records.pipe(decode(samples, rejected), countWindow(256, 50), concatMap(gradientStep))
 */
export function countWindow<T>(size: number, maxWaitMs: number, options?: CountWindowOptions): OperatorFunction<T, T[]>;
export function countWindow<T, W>(size: number, maxWaitMs: number, options: CountWindowOptions & { readonly collect: WindowCollector<T, W> }): OperatorFunction<T, W>;
export function countWindow<T, W>(size: number, maxWaitMs: number, options: CountWindowOptions & { readonly collect?: WindowCollector<T, W> } = {}): OperatorFunction<T, W> {
  if (!Number.isInteger(size) || size <= 0) throw new ConfigError('countWindow.size', `must be a positive whole number of records, got ${size}`);
  if (!(maxWaitMs > 0)) throw new ConfigError('countWindow.maxWaitMs', `must be a positive number of ms (or Infinity), got ${maxWaitMs}`);
  const { scheduler = asyncScheduler, moreComing, maxHoldMs = 10 * maxWaitMs, downstream } = options;
  const collect = options.collect ?? (intoArray as WindowCollector<T, W>);
  if (!(maxHoldMs >= 0)) throw new ConfigError('countWindow.maxHoldMs', `must be a number of ms, 0 or more, got ${maxHoldMs}`);
  return (source) =>
    new Observable<W>((subscriber) => {
      let batch: W | undefined;
      let count = 0;
      let openedAt = 0;
      let timer: Subscription | undefined;
      /** The batch's wait is over, and it waits for the downstream to be free. */
      let held = false;
      const flush = () => {
        timer?.unsubscribe();
        timer = undefined;
        held = false;
        if (batch === undefined) return;
        const full = batch;
        batch = undefined;
        count = 0;
        subscriber.next(full);
      };
      const waited = () => {
        timer = undefined;
        if (moreComing?.() && scheduler.now() - openedAt + maxWaitMs <= maxHoldMs) timer = scheduler.schedule(waited, maxWaitMs);
        else if (downstream?.busy()) held = true;
        else flush();
      };
      const freed = downstream?.freed.subscribe(() => {
        if (held) flush();
      });
      const open = (): W => {
        openedAt = scheduler.now();
        if (Number.isFinite(maxWaitMs)) timer = scheduler.schedule(waited, maxWaitMs);
        return collect.open(size);
      };
      const subscription = source.subscribe({
        next: (value) => {
          batch ??= open();
          collect.add(batch, value);
          count += 1;
          if (count >= size) flush();
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => {
          flush();
          subscriber.complete();
        },
      });
      return () => {
        timer?.unsubscribe();
        freed?.unsubscribe();
        subscription.unsubscribe();
      };
    });
}
