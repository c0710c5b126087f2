import { asyncScheduler, bufferTime, filter, pipe, type OperatorFunction, type SchedulerLike } from 'rxjs';
import { ConfigError } from '../schemas/errors.js';

/**
 * The micro-batch: batches of at most `size` records (count), flushed after
 * `maxWaitMs` (ms) at the latest, so a quiet lane still trains. Empty batches
 * are not emitted; what is left is flushed when the source completes.
 *
 * @example
 * lane.records.pipe(decode(samples, rejected), countWindow(256, 50), concatMap(gradientStep))
 */
export function countWindow<T>(size: number, maxWaitMs: number, scheduler: SchedulerLike = asyncScheduler): OperatorFunction<T, T[]> {
  if (!Number.isInteger(size) || size <= 0) throw new ConfigError('countWindow.size', `must be a positive whole number of records, got ${size}`);
  if (!(maxWaitMs > 0)) throw new ConfigError('countWindow.maxWaitMs', `must be a positive number of ms, got ${maxWaitMs}`);
  return pipe(bufferTime(maxWaitMs, null, size, scheduler), filter((batch) => batch.length > 0));
}
