import { Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { slidingWindow, tumblingWindow, type StreamElement, type Window, type WindowStats } from '../../operators/index.js';
import { marbleScheduler as scheduler } from '../support/marbles.js';

const at = (eventTime: number): StreamElement<string> => ({ kind: 'record', value: `v${eventTime}`, eventTime });
const mark = (watermark: number): StreamElement<string> => ({ kind: 'watermark', watermark });
const win = (start: number, end: number, values: string[], late = false): Window<string> => ({ start, end, values, late });

describe('tumblingWindow', () => {
  it('fires each window when the watermark passes its end, with the records of its time range', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const source = cold('a-b-c-W-d-X|', { a: at(1), b: at(12), c: at(5), W: mark(9), d: at(15), X: mark(19) });
      expectObservable(source.pipe(tumblingWindow({ sizeMs: 10 }))).toBe('------x---y|', { x: win(0, 10, ['v1', 'v5']), y: win(10, 20, ['v12', 'v15']) });
    });
  });

  it('fires again for a record within the allowed lateness, and counts and side-outputs later ones', () => {
    const lateSeen: string[] = [];
    const stats: WindowStats = { late: 0 };
    scheduler().run(({ cold, expectObservable }) => {
      const late = new Subject<string>();
      late.subscribe((v) => lateSeen.push(v));
      // Window [0,10) fires at watermark 9, fires again for v7 (late, but within 5 ms), and is gone at watermark 14, so v8 is too late.
      const source = cold('a-W-b-X-c|', { a: at(2), W: mark(9), b: at(7), X: mark(14), c: at(8) });
      expectObservable(source.pipe(tumblingWindow({ sizeMs: 10, allowedLatenessMs: 5, lateRecords: late, stats }))).toBe('--x-y----|', {
        x: win(0, 10, ['v2']),
        y: win(0, 10, ['v2', 'v7'], true),
      });
    });
    expect(lateSeen).toEqual(['v8']);
    expect(stats.late).toBe(1);
  });

  it('fires the open windows when the source completes', () => {
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(cold('a-b|', { a: at(3), b: at(25) }).pipe(tumblingWindow({ sizeMs: 10 }))).toBe('---(xy|)', { x: win(0, 10, ['v3']), y: win(20, 30, ['v25']) });
    });
  });

  it('handles the empty source and the source error', () => {
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(cold<StreamElement<string>>('|').pipe(tumblingWindow({ sizeMs: 10 }))).toBe('|');
      expectObservable(cold<StreamElement<string>>('a#', { a: at(1) }).pipe(tumblingWindow({ sizeMs: 10 }))).toBe('-#');
    });
  });

  it('unsubscribes from the source early and fires nothing afterwards', () => {
    scheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
      const source = cold('a-b-W|', { a: at(1), b: at(2), W: mark(20) });
      expectObservable(source.pipe(tumblingWindow({ sizeMs: 10 })), '^--!').toBe('');
      expectSubscriptions(source.subscriptions).toBe('^--!');
    });
  });
});

describe('slidingWindow', () => {
  it('puts each record in every window that covers it', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const source = cold('a-b-(W|)', { a: at(4), b: at(7), W: mark(30) });
      expectObservable(source.pipe(slidingWindow({ sizeMs: 10, slideMs: 5 }))).toBe('----(xyz|)', {
        x: win(-5, 5, ['v4']),
        y: win(0, 10, ['v4', 'v7']),
        z: win(5, 15, ['v7']),
      });
    });
  });

  it('names a bad option', () => {
    expect(() => slidingWindow({ sizeMs: 10, slideMs: 20 })).toThrow('slidingWindow.slideMs: must not exceed sizeMs');
    expect(() => tumblingWindow({ sizeMs: 0 })).toThrow('slidingWindow.sizeMs');
  });
});
