import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addWindows, closedWindows, scoreSamples, windowsOf, windowScores } from '../../operators/prequential.js';
import type { PrequentialWindow } from '../../schemas/index.js';

describe('prequential scores', () => {
  it('score each sample: mean absolute and squared error over the outputs, and the class for classifiers', () => {
    const predicted = [0.7, 0.2, 0.1, 0.1, 0.3, 0.6];
    const target = [1, 0, 0, 1, 0, 0];
    const scores = scoreSamples(predicted, target, Float32Array.of(0.36, 2.3), 3, true);
    expect([...scores.correct]).toEqual([1, 0]);
    expect(scores.absError[0]).toBeCloseTo((0.3 + 0.2 + 0.1) / 3, 6);
    expect(scores.squaredError[1]).toBeCloseTo((0.81 + 0.09 + 0.36) / 3, 6);
    expect([...scoreSamples([0.8, 0.4], [1, 1], Float32Array.of(0, 0), 1, true).correct]).toEqual([1, 0]);
    expect([...scoreSamples([0.8, 0.4], [1, 1], Float32Array.of(0, 0), 1, false).correct]).toEqual([0, 0]);
  });

  it('split into windows by event time and merged in any grouping, add up to the scores of all samples at once', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 100_000 }), fc.float({ min: 0, max: 10, noNaN: true })), { minLength: 1, maxLength: 300 }), fc.nat(300), (samples, cut) => {
        const at = cut % samples.length;
        const scoresOf = (part: typeof samples) => scoreSamples(part.map(([, y]) => y), part.map(() => 0), Float32Array.from(part.map(([, y]) => y * y)), 1, false);
        const windows = new Map<number, PrequentialWindow>();
        for (const part of [samples.slice(0, at), samples.slice(at)]) addWindows(windows, windowsOf(part.map(([t]) => t), scoresOf(part), 10_000), 1_000);
        const all = windowsOf(samples.map(([t]) => t), scoresOf(samples), 10_000);
        const merged = [...windows.values()].sort((a, b) => a.start - b.start);
        expect(merged.map((w) => [w.start, w.samples, w.lastEventTime])).toEqual(all.map((w) => [w.start, w.samples, w.lastEventTime]));
        merged.forEach((w, i) => expect(w.lossSum).toBeCloseTo(all[i]!.lossSum, 2));
        expect(all.every((w) => w.start % 10_000 === 0)).toBe(true);
      }),
    );
  });

  it('keep the newest windows, and close those that end at or before the watermark', () => {
    const windows = new Map<number, PrequentialWindow>();
    const window = (start: number): PrequentialWindow => ({ start, samples: 4, lossSum: 2, absErrorSum: 1, squaredErrorSum: 4, correct: 3, lastEventTime: start + 1 });
    addWindows(windows, [window(0), window(10), window(20), window(30)], 3);
    expect([...windows.keys()].sort((a, b) => a - b)).toEqual([10, 20, 30]);
    const snapshot = { prequential: [...windows.values()], prequentialWindowMs: 10, eventTimeWatermark: 30 };
    expect(closedWindows(snapshot).map((w) => w.start)).toEqual([10, 20]);
    expect(windowScores(window(0))).toEqual({ start: 0, samples: 4, loss: 0.5, mae: 0.25, rmse: 1, accuracy: 0.75 });
  });
});
