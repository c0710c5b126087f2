import { map, NEVER, tap } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { countWindow } from '../../operators/index.js';
import { marbleScheduler as scheduler } from '../support/marbles.js';

describe('countWindow', () => {
  it('emits full batches at once and partial ones after maxWaitMs', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const source = cold('a-b-c-d-e---------|');
      // Full at c (frame 4); the next batch starts with d (frame 6) and is flushed 10 ms later, at frame 16.
      expectObservable(source.pipe(countWindow(3, 10))).toBe('----x-----------y-|', { x: ['a', 'b', 'c'], y: ['d', 'e'] });
    });
  });

  it('times the wait from the first record of a batch, not from the last flush', () => {
    scheduler().run(({ cold, expectObservable }) => {
      // Nothing for 20 frames, then a: a batch flushed on a fixed beat would go out at frame 30, 10 after a.
      expectObservable(cold('--------------------a----------------|').pipe(countWindow(3, 15))).toBe('-----------------------------------x-|', { x: ['a'] });
    });
  });

  it('waits on while more is coming, for at most maxHoldMs', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const source = cold('a-b---------------|');
      // Always more coming: checked at 4 and 8, flushed at 12 (maxHoldMs).
      expectObservable(source.pipe(countWindow(3, 4, { moreComing: () => true, maxHoldMs: 12 }))).toBe('------------y-----|', { y: ['a', 'b'] });
      // More coming at the first check only: flushed at the second, frame 8.
      let asked = 0;
      expectObservable(source.pipe(countWindow(3, 4, { moreComing: () => asked++ === 0, maxHoldMs: 12 }))).toBe('--------y---------|', { y: ['a', 'b'] });
      // What comes while it waits fills the batch, which then goes at once.
      expectObservable(cold('a-b-------c----|').pipe(countWindow(3, 4, { moreComing: () => true }))).toBe('----------x----|', { x: ['a', 'b', 'c'] });
    });
  });

  it('holds a partial batch while the downstream is busy, gathering up to size, and lets it go once it is free', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const busyUntilFrame9 = () => {
        let busy = true;
        const freed = cold('---------f').pipe(
          tap(() => (busy = false)),
          map(() => undefined),
        );
        return { busy: () => busy, freed };
      };
      // a's wait is over at frame 3 while the downstream is busy: b and c join it, and it goes when freed, at 9.
      expectObservable(cold('a-b-c-------|').pipe(countWindow(4, 3, { downstream: busyUntilFrame9() }))).toBe('---------x--|', { x: ['a', 'b', 'c'] });
      // A batch that fills goes at once, busy or not; the next gathers until freed.
      expectObservable(cold('a-b-c-d-e---|').pipe(countWindow(3, 3, { downstream: busyUntilFrame9() }))).toBe('----x----y--|', { x: ['a', 'b', 'c'], y: ['d', 'e'] });
      // Not busy: the usual wait.
      const idle = { busy: () => false, freed: NEVER };
      expectObservable(cold('a-b-c-------|').pipe(countWindow(4, 3, { downstream: idle }))).toBe('---x---y----|', { x: ['a', 'b'], y: ['c'] });
    });
  });

  it('emits nothing for an empty source', () => {
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(cold('|').pipe(countWindow(3, 10))).toBe('|');
    });
  });

  it('flushes what it holds when the source completes, and passes source errors on', () => {
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(cold('a|').pipe(countWindow(3, 10))).toBe('-(x|)', { x: ['a'] });
      expectObservable(cold('a#').pipe(countWindow(3, 10))).toBe('-#');
    });
  });

  it('releases its timer and the source on early unsubscribe', () => {
    scheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
      const source = cold('a-b-c-d-e|');
      expectObservable(source.pipe(countWindow(3, 100)), '^-----!').toBe('----x', { x: ['a', 'b', 'c'] });
      expectSubscriptions(source.subscriptions).toBe('^-----!');
    });
  });

  it('with maxWaitMs Infinity, cuts by count alone: no timer, the rest at completion', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const source = cold('a-b-c-d----------------------------------------|');
      expectObservable(source.pipe(countWindow(3, Number.POSITIVE_INFINITY))).toBe('----x------------------------------------------(y|)', { x: ['a', 'b', 'c'], y: ['d'] });
    });
  });

  it('gathers each value into what collect opens, as it comes, one window per batch', () => {
    const test = scheduler();
    const opened: number[] = [];
    const addedAt: Array<[string, number]> = [];
    const collect = {
      open: (size: number) => {
        opened.push(size);
        return { values: '' };
      },
      add: (window: { values: string }, value: string) => {
        addedAt.push([value, test.now()]);
        window.values += value;
      },
    };
    test.run(({ cold, expectObservable, flush }) => {
      const source = cold('a-b-c-d-e---------|');
      expectObservable(source.pipe(countWindow(3, 10, { collect }))).toBe('----x-----------y-|', { x: { values: 'abc' }, y: { values: 'de' } });
      flush();
    });
    // Each value was handed over at the frame it came, not when its window closed.
    expect(addedAt).toEqual([['a', 0], ['b', 2], ['c', 4], ['d', 6], ['e', 8]]);
    expect(opened).toEqual([3, 3]);
  });

  it('rejects a size or wait that is not positive, by name', () => {
    expect(() => countWindow(0, 10)).toThrow('countWindow.size');
    expect(() => countWindow(3, 0)).toThrow('countWindow.maxWaitMs');
    expect(() => countWindow(3, 10, { maxHoldMs: -1 })).toThrow('countWindow.maxHoldMs');
  });
});
