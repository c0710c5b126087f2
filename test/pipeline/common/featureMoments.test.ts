import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyScaling, emptyMoments, mergeMoments, momentsOf, scalingOf } from '../../../pipeline/common/featureMoments.js';

/** Mean and population variance of each column, the plain two-pass way, in double precision. */
function twoPass(rows: readonly number[][], features: number): { mean: number[]; variance: number[] } {
  const mean = Array.from({ length: features }, (_, f) => rows.reduce((sum, row) => sum + row[f]!, 0) / rows.length);
  const variance = Array.from({ length: features }, (_, f) => rows.reduce((sum, row) => sum + (row[f]! - mean[f]!) ** 2, 0) / rows.length);
  return { mean, variance };
}

const features = 3;
// Readings on wildly different scales (1e-3 to 1e4), as raw sensors give them.
const row = fc.tuple(fc.double({ min: -1e-3, max: 1e-3, noNaN: true }), fc.double({ min: -10, max: 10, noNaN: true }), fc.double({ min: 9_000, max: 11_000, noNaN: true })).map((r) => [...r]);

describe('feature moments', () => {
  it("merged with Chan's formula over any split into batches, equal the moments of all readings at once", () => {
    fc.assert(
      fc.property(fc.array(row, { minLength: 2, maxLength: 200 }), fc.array(fc.nat(200), { maxLength: 6 }), (rows, cuts) => {
        const bounds = [0, ...new Set(cuts.map((c) => c % rows.length))].sort((a, b) => a - b).concat(rows.length);
        let merged = emptyMoments(features);
        for (let i = 0; i + 1 < bounds.length; i++) merged = mergeMoments(merged, momentsOf(rows.slice(bounds[i], bounds[i + 1]).flat(), features));
        const { mean, variance } = twoPass(rows, features);
        expect(merged.count).toBe(rows.length);
        for (let f = 0; f < features; f++) {
          const scale = Math.max(1, Math.abs(mean[f]!));
          expect(Math.abs(merged.mean[f]! - mean[f]!) / scale).toBeLessThan(1e-12);
          expect(Math.abs(merged.m2[f]! / rows.length - variance[f]!)).toBeLessThan(1e-9 * Math.max(1, variance[f]!, mean[f]! ** 2 * 1e-6));
        }
      }),
    );
  });

  it('merge the same in any grouping: (a ⊕ b) ⊕ c equals a ⊕ (b ⊕ c) to rounding', () => {
    fc.assert(
      fc.property(fc.array(row, { minLength: 1, maxLength: 30 }), fc.array(row, { minLength: 1, maxLength: 30 }), fc.array(row, { minLength: 1, maxLength: 30 }), (a, b, c) => {
        const [ma, mb, mc] = [a, b, c].map((rows) => momentsOf(rows.flat(), features));
        const left = mergeMoments(mergeMoments(ma!, mb!), mc!);
        const right = mergeMoments(ma!, mergeMoments(mb!, mc!));
        expect(left.count).toBe(right.count);
        left.mean.forEach((m, f) => expect(m).toBeCloseTo(right.mean[f]!, 6));
        left.m2.forEach((m, f) => expect(Math.abs(m - right.m2[f]!)).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(m))));
      }),
    );
  });

  it('scale a batch to mean 0 and standard deviation 1 per feature, whatever the raw scales', () => {
    const rows = Array.from({ length: 500 }, (_, i) => [0.001 * Math.sin(i), 5 + 3 * Math.cos(i * 0.7), 10_000 + 800 * Math.sin(i * 0.13)]);
    const values = Float32Array.from(rows.flat());
    applyScaling(scalingOf(momentsOf(values, features)), values);
    const scaled = Array.from({ length: rows.length }, (_, i) => [...values.subarray(i * features, (i + 1) * features)]);
    const { mean, variance } = twoPass(scaled, features);
    mean.forEach((m) => expect(Math.abs(m)).toBeLessThan(1e-4));
    variance.forEach((v) => expect(v).toBeCloseTo(1, 3));
  });

  it('leave a feature that has been constant finite, and moments of nothing the identity', () => {
    const constant = Float32Array.from(Array.from({ length: 100 }, (_, i) => [42, 0, i]).flat());
    const scaling = scalingOf(momentsOf(constant, features));
    const values = Float32Array.of(42, 0, 50, 43, 1, 50);
    applyScaling(scaling, values);
    expect([...values].every(Number.isFinite)).toBe(true);
    // Constant 42: divided by at least 1e-3·42, so one unit off reads as 1/0.042 ≈ 23.8, not as infinity.
    expect(values[3]).toBeCloseTo(1 / 0.042, 2);
    expect(values[0]).toBe(0);
    const identity = scalingOf(emptyMoments(features));
    expect([...identity.shift, ...identity.factor]).toEqual([0, 0, 0, 1, 1, 1]);
    expect(() => mergeMoments(emptyMoments(2), emptyMoments(3))).toThrow('cannot merge the moments of 2 features with those of 3');
  });
});
