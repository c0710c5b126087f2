import { Observable, type Observer, type OperatorFunction } from 'rxjs';
import { z } from 'zod';
import type { StreamElement } from './withWatermarks.js';
import { validateOptions } from './validateOptions.js';

/** One event-time window's contents: records with start ≤ event time < end (ms). */
export interface Window<T> {
  readonly start: number;
  readonly end: number;
  readonly values: readonly T[];
  /** True when the window fires again because a late record (within the allowed lateness) joined it. */
  readonly late: boolean;
}

/** Counters a window operator keeps for its owner. */
export interface WindowStats {
  /** Records that came after their every window had closed (beyond the allowed lateness). */
  late: number;
}

/** Options of {@link slidingWindow}. Times in ms. */
export interface SlidingWindowOptions<T> {
  readonly sizeMs: number;
  readonly slideMs: number;
  /** How long after a window fires it still takes late records, firing again for each. Default 0. */
  readonly allowedLatenessMs?: number;
  /** Side output for records too late for any window. */
  readonly lateRecords?: Observer<T>;
  /** Incremented for each record too late for any window. */
  readonly stats?: WindowStats;
}

const optionsSchema = z
  .object({
    sizeMs: z.number().positive(),
    slideMs: z.number().positive(),
    allowedLatenessMs: z.number().nonnegative().default(0),
  })
  .refine((o) => o.slideMs <= o.sizeMs, { message: 'must not exceed sizeMs', path: ['slideMs'] });

interface WindowState<T> {
  readonly start: number;
  readonly values: T[];
  fired: boolean;
}

/**
 * Flink's sliding event-time windows over a stream with watermarks: windows of
 * `sizeMs` starting every `slideMs`; each record joins every window that covers
 * its event time. A window fires when the watermark passes its end, and stays
 * open for `allowedLatenessMs` more, firing again for each late record. Records
 * later than that are counted (`stats.late`) and go to `lateRecords`. When the
 * source completes, every open window fires, as at Flink's final watermark.
 */
export function slidingWindow<T>(options: SlidingWindowOptions<T>): OperatorFunction<StreamElement<T>, Window<T>> {
  const { sizeMs, slideMs, allowedLatenessMs } = validateOptions('slidingWindow', optionsSchema, options);
  return (source) =>
    new Observable<Window<T>>((subscriber) => {
      const windows = new Map<number, WindowState<T>>();
      let watermark = Number.NEGATIVE_INFINITY;

      const fire = (state: WindowState<T>, late: boolean) => {
        state.fired = true;
        subscriber.next({ start: state.start, end: state.start + sizeMs, values: [...state.values], late });
      };

      const onRecord = (value: T, eventTime: number) => {
        let joined = false;
        const lastStart = Math.floor(eventTime / slideMs) * slideMs;
        for (let start = lastStart; start > eventTime - sizeMs; start -= slideMs) {
          const end = start + sizeMs;
          if (end - 1 + allowedLatenessMs <= watermark) continue;
          let state = windows.get(start);
          if (!state) windows.set(start, (state = { start, values: [], fired: false }));
          state.values.push(value);
          joined = true;
          if (end - 1 <= watermark) fire(state, true);
        }
        if (!joined) {
          if (options.stats) options.stats.late++;
          options.lateRecords?.next(value);
        }
      };

      const onWatermark = (next: number) => {
        if (next <= watermark) return;
        watermark = next;
        const starts = [...windows.keys()].sort((a, b) => a - b);
        for (const start of starts) {
          const state = windows.get(start)!;
          const end = start + sizeMs;
          if (!state.fired && end - 1 <= watermark) fire(state, false);
          if (end - 1 + allowedLatenessMs <= watermark) windows.delete(start);
        }
      };

      return source.subscribe({
        next: (element) => {
          if (element.kind === 'record') onRecord(element.value, element.eventTime);
          else onWatermark(element.watermark);
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => {
          for (const start of [...windows.keys()].sort((a, b) => a - b)) {
            const state = windows.get(start)!;
            if (!state.fired) fire(state, false);
          }
          windows.clear();
          subscriber.complete();
        },
      });
    });
}
