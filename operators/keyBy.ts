import { asyncScheduler, debounceTime, groupBy, type GroupedObservable, type OperatorFunction, type SchedulerLike } from 'rxjs';
import { ConfigError } from '../schemas/errors.js';

/** Options of {@link keyBy}. */
export interface KeyByOptions {
  /** A key's stream completes after this many ms without a record, so state per key stays bounded. Default: never. */
  readonly idleMs?: number;
  readonly scheduler?: SchedulerLike;
}

/**
 * Flink's `keyBy`: splits a stream into one stream per key, each in arrival
 * order. With `idleMs`, a quiet key's stream completes, and a later record with
 * that key opens a new one. A throwing `keyOf` errors the stream.
 *
 * @example
 * samples$.pipe(keyBy((s) => s.deviceId, { idleMs: 60_000 }), mergeMap((device$) => device$.pipe(slidingWindow(…))))
 */
export function keyBy<T, K>(keyOf: (value: T) => K, options: KeyByOptions = {}): OperatorFunction<T, GroupedObservable<K, T>> {
  const { idleMs, scheduler = asyncScheduler } = options;
  if (idleMs === undefined) return groupBy(keyOf);
  if (!(idleMs > 0)) throw new ConfigError('keyBy.idleMs', `must be a positive number of ms, got ${idleMs}`);
  return groupBy(keyOf, { duration: (group) => group.pipe(debounceTime(idleMs, scheduler)) });
}
