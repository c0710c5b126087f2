import { mergeMap, toArray, map } from 'rxjs';
import { describe, it } from 'vitest';
import { keyBy } from '../../operators/index.js';
import { marbleScheduler as scheduler } from '../support/marbles.js';

describe('keyBy', () => {
  it('splits the stream into one ordered stream per key', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const source = cold('a-b-A-c-B|', { a: 'x1', b: 'y1', A: 'x2', c: 'y2', B: 'x3' });
      const perKey = source.pipe(
        keyBy((v) => v[0]),
        mergeMap((group) => group.pipe(toArray(), map((values) => `${group.key}:${values.join(',')}`))),
      );
      expectObservable(perKey).toBe('---------(xy|)', { x: 'x:x1,x2,x3', y: 'y:y1,y2' });
    });
  });

  it('completes a key after idleMs without records, and opens it again for a later one', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const source = cold('a 20ms b|', { a: 'k1', b: 'k2' });
      const groups = source.pipe(keyBy((v) => v[0], { idleMs: 5 }), map((group) => group.key));
      expectObservable(groups).toBe('a 20ms b|', { a: 'k', b: 'k' });
    });
  });

  it('handles the empty source, the source error and a throwing key function', () => {
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(cold('|').pipe(keyBy((v: string) => v))).toBe('|');
      expectObservable(cold('#').pipe(keyBy((v: string) => v))).toBe('#');
      const throwing = cold('a|').pipe(
        keyBy(() => {
          throw new Error('no key');
        }),
      );
      expectObservable(throwing).toBe('#', undefined, new Error('no key'));
    });
  });

  it('unsubscribes from the source early', () => {
    scheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
      const source = cold('a-b-c-d|');
      expectObservable(source.pipe(keyBy((v) => v), map((g) => g.key)), '^--!').toBe('a-b');
      expectSubscriptions(source.subscriptions).toBe('^--!');
    });
  });

  it('emits nothing after an early unsubscribe while idle timers are pending', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const source = cold('a-b-c-d|');
      expectObservable(source.pipe(keyBy((v) => v, { idleMs: 50 }), map((g) => g.key)), '^--!').toBe('a-b');
    });
  });
});
