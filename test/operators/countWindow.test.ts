import { describe, expect, it } from 'vitest';
import { countWindow } from '../../operators/index.js';
import { marbleScheduler as scheduler } from '../support/marbles.js';

describe('countWindow', () => {
  it('emits full batches at once and partial ones after maxWaitMs', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const source = cold('a-b-c-d-e---------|');
      // Full at c (frame 4); the next batch starts there and is flushed 10 ms later, at frame 14.
      expectObservable(source.pipe(countWindow(3, 10))).toBe('----x---------y---|', { x: ['a', 'b', 'c'], y: ['d', 'e'] });
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

  it('rejects a size or wait that is not positive, by name', () => {
    expect(() => countWindow(0, 10)).toThrow('countWindow.size');
    expect(() => countWindow(3, 0)).toThrow('countWindow.maxWaitMs');
  });
});
