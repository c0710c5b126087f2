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
  const config = validateOptions('slidingWindow', optionsSchema, options);
  return (source) =>
    new Observable<Window<T>>((subscriber) => {
      const windows = new OpenWindows<T>(config, options, (window) => subscriber.next(window));
      return source.subscribe({
        next: (element) => {
          if (element.kind === 'record') windows.add(element.value, element.eventTime);
          else windows.advance(element.watermark);
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => {
          windows.fireAll();
          subscriber.complete();
        },
      });
    });
}

/** The windows of one subscription that may still fire, keyed by start, and the watermark they have seen. */
class OpenWindows<T> {
  private readonly windows = new Map<number, WindowState<T>>();
  private watermark = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly sizes: { readonly sizeMs: number; readonly slideMs: number; readonly allowedLatenessMs: number },
    private readonly late: Pick<SlidingWindowOptions<T>, 'stats' | 'lateRecords'>,
    private readonly emit: (window: Window<T>) => void,
  ) {}

  /** Adds a record to every window that covers its event time and is not yet closed; a record no window takes is late. */
  add(value: T, eventTime: number): void {
    const { sizeMs, slideMs, allowedLatenessMs } = this.sizes;
    let joined = false;
    const lastStart = Math.floor(eventTime / slideMs) * slideMs;
    for (let start = lastStart; start > eventTime - sizeMs; start -= slideMs) {
      const end = start + sizeMs;
      if (end - 1 + allowedLatenessMs <= this.watermark) continue;
      const state = this.stateAt(start);
      state.values.push(value);
      joined = true;
      if (end - 1 <= this.watermark) this.fire(state, true);
    }
    if (joined) return;
    if (this.late.stats) this.late.stats.late++;
    this.late.lateRecords?.next(value);
  }

  /** Fires each window the watermark passed, and forgets those past their allowed lateness. */
  advance(watermark: number): void {
    if (watermark <= this.watermark) return;
    this.watermark = watermark;
    const { sizeMs, allowedLatenessMs } = this.sizes;
    for (const state of this.inOrder()) {
      const end = state.start + sizeMs;
      if (!state.fired && end - 1 <= watermark) this.fire(state, false);
      if (end - 1 + allowedLatenessMs <= watermark) this.windows.delete(state.start);
    }
  }

  /** The source completed: every window not yet fired fires, as at Flink's final watermark. */
  fireAll(): void {
    for (const state of this.inOrder()) if (!state.fired) this.fire(state, false);
    this.windows.clear();
  }

  private stateAt(start: number): WindowState<T> {
    let state = this.windows.get(start);
    if (!state) this.windows.set(start, (state = { start, values: [], fired: false }));
    return state;
  }

  private inOrder(): WindowState<T>[] {
    return [...this.windows.values()].sort((a, b) => a.start - b.start);
  }

  private fire(state: WindowState<T>, late: boolean): void {
    state.fired = true;
    this.emit({ start: state.start, end: state.start + this.sizes.sizeMs, values: [...state.values], late });
  }
}
