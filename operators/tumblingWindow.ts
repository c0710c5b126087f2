import type { Observer, OperatorFunction } from 'rxjs';
import { slidingWindow, type Window, type WindowStats } from './slidingWindow.js';
import type { StreamElement } from './withWatermarks.js';

/** Options of {@link tumblingWindow}. Times in ms. */
export interface TumblingWindowOptions<T> {
  readonly sizeMs: number;
  readonly allowedLatenessMs?: number;
  readonly lateRecords?: Observer<T>;
  readonly stats?: WindowStats;
}

/**
 * Flink's tumbling event-time windows: back-to-back windows of `sizeMs`, each
 * record in exactly one. A sliding window whose slide equals its size; see
 * `slidingWindow` for firing, lateness and late records.
 */
export function tumblingWindow<T>(options: TumblingWindowOptions<T>): OperatorFunction<StreamElement<T>, Window<T>> {
  return slidingWindow({ ...options, slideMs: options.sizeMs });
}
