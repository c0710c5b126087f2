import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeTensor, encodeTensor, encodedBytesPerElement, tensorErrorBounds, TensorError } from '../../schemas/index.js';

const fp16Max = 65504;

/** Float32 tensors with a mix of ordinary values, tiny ones, zeros and rare large outliers. */
function tensorValues(maxMagnitude: number): fc.Arbitrary<Float32Array> {
  const ordinary = fc.float({ min: -1, max: 1, noNaN: true });
  const tiny = fc.float({ min: Math.fround(-1e-6), max: Math.fround(1e-6), noNaN: true });
  const outlier = fc.float({ min: Math.fround(-maxMagnitude), max: Math.fround(maxMagnitude), noNaN: true });
  const element = fc.oneof({ arbitrary: ordinary, weight: 20 }, { arbitrary: tiny, weight: 3 }, { arbitrary: fc.constant(0), weight: 2 }, { arbitrary: outlier, weight: 1 });
  return fc.array(element, { minLength: 1, maxLength: 300 }).map((values) => Float32Array.from(values));
}

function worstExcess(values: Float32Array, decoded: Float32Array, bound: (x: number) => number): number {
  let worst = -Infinity;
  for (let i = 0; i < values.length; i++) worst = Math.max(worst, Math.abs(decoded[i]! - values[i]!) - bound(values[i]!));
  return worst;
}

describe('tensor encodings', () => {
  it('FP32 is exact', () => {
    fc.assert(
      fc.property(tensorValues(3e38), (values) => {
        expect(decodeTensor(encodeTensor('w', [values.length], values, 'FP32'))).toEqual(values);
      }),
    );
  });

  it('FP16 stays within max(2^-11·|x|, 2^-25) for |x| ≤ 65504, outliers included', () => {
    fc.assert(
      fc.property(tensorValues(fp16Max), (values) => {
        const decoded = decodeTensor(encodeTensor('w', [values.length], values, 'FP16'));
        expect(worstExcess(values, decoded, tensorErrorBounds.FP16)).toBeLessThanOrEqual(0);
      }),
      { numRuns: 500 },
    );
  });

  it('FP16 rounds to nearest even, keeps subnormals and saturates beyond 65504', () => {
    const values = Float32Array.from([1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -24, 2 ** -26, 1e6, -1e6, 65519, -0]);
    const decoded = decodeTensor(encodeTensor('w', [values.length], values, 'FP16'));
    expect([...decoded]).toEqual([1, 1 + 4 * 2 ** -11, 2 ** -24, 0, fp16Max, -fp16Max, fp16Max, -0]);
  });

  it('INT8 stays within scale/2 of every element, outliers included, and keeps zero exact', () => {
    fc.assert(
      fc.property(tensorValues(1e4), (values) => {
        const tensor = encodeTensor('w', [values.length], values, 'INT8');
        const decoded = decodeTensor(tensor);
        let max = 0;
        let min = 0;
        for (const v of values) {
          max = Math.max(max, v);
          min = Math.min(min, v);
        }
        // The documented scale: the range (widened to include 0) over 255 steps, rounded up to a
        // float32 (it travels as an Avro float): at least the exact quotient, and at most one float32
        // step above it (the smallest subnormal for a tiny range). An absolute tolerance
        // would fail for large ranges (CI seed 653185327).
        if (max > min) {
          const exact = (max - min) / 255;
          expect(tensor.scale).toBeGreaterThanOrEqual(exact);
          expect(tensor.scale - exact).toBeLessThanOrEqual(Math.max(exact * 2 ** -23, 2 ** -149));
        }
        expect(worstExcess(values, decoded, (x) => tensorErrorBounds.INT8(x, tensor.scale))).toBeLessThanOrEqual(0);
        values.forEach((v, i) => {
          if (v === 0) expect(decoded[i]).toBe(0);
        });
      }),
      { numRuns: 500, examples: [[Float32Array.from([6570.560546875, -9857.564453125, 0])]] },
    );
  });

  it('INT8 of an all-zero tensor decodes to zeros', () => {
    const decoded = decodeTensor(encodeTensor('w', [2, 2], new Float32Array(4), 'INT8'));
    expect([...decoded]).toEqual([0, 0, 0, 0]);
  });

  it('takes 4, 2 and 1 bytes per element', () => {
    const values = new Float32Array(12).fill(0.25);
    for (const encoding of ['FP32', 'FP16', 'INT8'] as const) {
      expect(encodeTensor('w', [3, 4], values, encoding).bytes.length).toBe(12 * encodedBytesPerElement(encoding));
    }
    expect([4, 2, 1]).toEqual((['FP32', 'FP16', 'INT8'] as const).map(encodedBytesPerElement));
  });

  it('refuses non-finite elements, shapes that do not fit, and bytes that do not fit the shape', () => {
    expect(() => encodeTensor('dense/kernel', [2], Float32Array.from([1, Number.NaN]), 'FP16')).toThrow(TensorError);
    expect(() => encodeTensor('dense/kernel', [2], Float32Array.from([1, Number.NaN]), 'FP16')).toThrow("tensor 'dense/kernel': element 1 is NaN");
    expect(() => encodeTensor('b', [3], new Float32Array(2), 'FP32')).toThrow('shape [3] holds 3 elements, got 2');
    expect(() => encodeTensor('b', [-1], new Float32Array(0), 'FP32')).toThrow(/not a whole number/);
    const tensor = encodeTensor('b', [4], new Float32Array(4), 'FP32');
    expect(() => decodeTensor({ ...tensor, bytes: tensor.bytes.subarray(0, 15) })).toThrow('shape [4] in FP32 needs 16 bytes, got 15');
    expect(() => decodeTensor({ ...tensor, encoding: 'INT8', bytes: Buffer.alloc(4), scale: 0 })).toThrow(/INT8 scale must be finite and positive/);
  });
});
