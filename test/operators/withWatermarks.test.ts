import { describe, expect, it } from 'vitest';
import { withWatermarks, type StreamElement } from '../../operators/index.js';
import { framesOf, marbleScheduler as scheduler } from '../support/marbles.js';

interface Reading {
  lane: number;
  time: number;
}
const record = (value: Reading): StreamElement<Reading> => ({ kind: 'record', value, eventTime: value.time });
const mark = (watermark: number): StreamElement<Reading> => ({ kind: 'watermark', watermark });
const eventTimeOf = (r: Reading) => r.time;

describe('withWatermarks', () => {
  it('trails the largest event time by the allowed out-of-orderness, and never goes back', () => {
    const test = scheduler();
    test.run(({ cold, flush }) => {
      const a = { lane: 0, time: 100 };
      const b = { lane: 0, time: 90 };
      const c = { lane: 0, time: 130 };
      const seen = framesOf(test, cold('a-b-c|', { a, b, c }).pipe(withWatermarks({ eventTimeOf, maxOutOfOrdernessMs: 20 })), flush);
      expect(seen).toEqual([[0, record(a)], [0, mark(79)], [2, record(b)], [4, record(c)], [4, mark(109)], [5, 'complete']]);
    });
  });

  it('holds the watermark at the slowest lane, until the idle check finds that lane quiet', () => {
    const test = scheduler();
    test.run(({ cold, flush }) => {
      const early = { lane: 1, time: 500 };
      const slow = { lane: 2, time: 100 };
      const later = { lane: 1, time: 600 };
      const source = cold('a b 7ms c 20ms |', { a: early, b: slow, c: later });
      const seen = framesOf(test, source.pipe(withWatermarks({ eventTimeOf, laneOf: (r) => r.lane, maxOutOfOrdernessMs: 0, idleTimeoutMs: 10 })), flush);
      // Lane 2 is last seen at frame 1; the check at frame 15 finds it idle for 14 ms, while lane 1 (frame 9) is not.
      expect(seen).toEqual([[0, record(early)], [0, mark(499)], [1, record(slow)], [9, record(later)], [15, mark(599)], [30, 'complete']]);
    });
  });

  it('handles the empty source, the source error and a throwing event-time function', () => {
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(cold<Reading>('|').pipe(withWatermarks({ eventTimeOf, maxOutOfOrdernessMs: 0 }))).toBe('|');
      expectObservable(cold<Reading>('#').pipe(withWatermarks({ eventTimeOf, maxOutOfOrdernessMs: 0 }))).toBe('#');
      const failing = cold('a|', { a: { lane: 0, time: 1 } }).pipe(
        withWatermarks({
          eventTimeOf: () => {
            throw new Error('no time');
          },
          maxOutOfOrdernessMs: 0,
        }),
      );
      expectObservable(failing).toBe('#', undefined, new Error('no time'));
    });
  });

  it('releases the source and its idle timer on early unsubscribe', () => {
    const test = scheduler();
    test.run(({ cold, expectSubscriptions, flush }) => {
      const source = cold('a 50ms b|', { a: { lane: 0, time: 1 }, b: { lane: 0, time: 2 } });
      const seen: unknown[] = [];
      const subscription = source.pipe(withWatermarks({ eventTimeOf, maxOutOfOrdernessMs: 0, idleTimeoutMs: 5 })).subscribe((e) => seen.push(e));
      test.schedule(() => subscription.unsubscribe(), 10);
      flush();
      expect(seen).toEqual([record({ lane: 0, time: 1 }), mark(0)]);
      expectSubscriptions(source.subscriptions).toBe('^ 9ms !');
    });
  });

  it('names a bad option', () => {
    expect(() => withWatermarks({ eventTimeOf, maxOutOfOrdernessMs: -1 })).toThrow('withWatermarks.maxOutOfOrdernessMs');
  });
});
