import { asyncScheduler, Observable, type OperatorFunction, type SchedulerLike } from 'rxjs';
import { z } from 'zod';
import { validateOptions } from './validateOptions.js';

/** A record with its event time (ms), or a watermark: no record at or before `watermark` (ms) is expected any more. */
export type StreamElement<T> =
  | { readonly kind: 'record'; readonly value: T; readonly eventTime: number }
  | { readonly kind: 'watermark'; readonly watermark: number };

/** Options of {@link withWatermarks}. */
export interface WatermarkOptions<T> {
  /** The event time of a record, in ms since the epoch. */
  readonly eventTimeOf: (value: T) => number;
  /** How late (ms) a record may be behind the latest event time of its lane and still count as in order. */
  readonly maxOutOfOrdernessMs: number;
  /** Which lane (partition) a record came from. Default: one lane. */
  readonly laneOf?: (value: T) => string | number;
  /** A lane with no record for this long (ms) stops holding the watermark back, until it has records again. Default: never. */
  readonly idleTimeoutMs?: number;
  readonly scheduler?: SchedulerLike;
}

const optionsSchema = z.object({
  eventTimeOf: z.custom<(value: never) => number>((value) => typeof value === 'function', 'must be a function'),
  maxOutOfOrdernessMs: z.number().nonnegative(),
  laneOf: z.custom<(value: never) => string | number>((value) => typeof value === 'function', 'must be a function').optional(),
  idleTimeoutMs: z.number().positive().optional(),
  scheduler: z.custom<SchedulerLike>().default(asyncScheduler),
});

interface LaneClock {
  maxEventTime: number;
  lastSeen: number;
}

/** The smallest watermark over the lanes that are not idle; undefined when every lane is idle (or there is none). */
function lowestWatermark(clocks: Iterable<LaneClock>, now: number, maxOutOfOrdernessMs: number, idleTimeoutMs: number | undefined): number | undefined {
  let lowest: number | undefined;
  for (const clock of clocks) {
    if (idleTimeoutMs !== undefined && now - clock.lastSeen >= idleTimeoutMs) continue;
    const watermark = clock.maxEventTime - maxOutOfOrdernessMs - 1;
    if (lowest === undefined || watermark < lowest) lowest = watermark;
  }
  return lowest;
}

/**
 * Flink's bounded-out-of-orderness watermarks, per lane: each lane's watermark
 * is its largest event time so far minus `maxOutOfOrdernessMs` minus 1, and the
 * stream's watermark is the smallest over the lanes that are not idle. Emits
 * each record as a `record` element, and a `watermark` element whenever the
 * stream's watermark rises. Event-time windows downstream fire on watermarks.
 */
export function withWatermarks<T>(options: WatermarkOptions<T>): OperatorFunction<T, StreamElement<T>> {
  const config = validateOptions('withWatermarks', optionsSchema, options);
  const { eventTimeOf, maxOutOfOrdernessMs } = options;
  const laneOf = options.laneOf ?? (() => 0);
  const { idleTimeoutMs, scheduler } = config;
  return (source) =>
    new Observable<StreamElement<T>>((subscriber) => {
      const lanes = new Map<string | number, LaneClock>();
      let emitted = Number.NEGATIVE_INFINITY;

      const advance = () => {
        const lowest = lowestWatermark(lanes.values(), scheduler.now(), maxOutOfOrdernessMs, idleTimeoutMs);
        if (lowest === undefined || lowest <= emitted) return;
        emitted = lowest;
        subscriber.next({ kind: 'watermark', watermark: lowest });
      };

      // Checking at half the timeout notices an idle lane at most 1.5 timeouts after its last record.
      const checkEveryMs = idleTimeoutMs === undefined ? 0 : Math.max(1, idleTimeoutMs / 2);
      const idleCheck =
        idleTimeoutMs === undefined
          ? undefined
          : scheduler.schedule(function check() {
              advance();
              this.schedule(undefined, checkEveryMs);
            }, checkEveryMs);

      const subscription = source.subscribe({
        next: (value) => {
          let eventTime: number;
          let lane: string | number;
          try {
            eventTime = eventTimeOf(value);
            lane = laneOf(value);
          } catch (error) {
            subscriber.error(error);
            return;
          }
          const clock = lanes.get(lane);
          if (clock) {
            clock.maxEventTime = Math.max(clock.maxEventTime, eventTime);
            clock.lastSeen = scheduler.now();
          } else {
            lanes.set(lane, { maxEventTime: eventTime, lastSeen: scheduler.now() });
          }
          subscriber.next({ kind: 'record', value, eventTime });
          advance();
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => subscriber.complete(),
      });

      return () => {
        idleCheck?.unsubscribe();
        subscription.unsubscribe();
      };
    });
}
