import { TensorError } from './errors.js';
import type { Tensor, TensorEncoding } from './types.js';

/**
 * Tensor element encodings and their error bounds, per element x and decoded x̂:
 *
 * - `FP32`: exact (4 bytes per element).
 * - `FP16`: IEEE 754 binary16, round-to-nearest-even (2 bytes). For |x| ≤ 65504,
 *   |x̂ − x| ≤ max(2^-11·|x|, 2^-25). Larger magnitudes saturate to ±65504.
 * - `INT8`: linear quantisation over the tensor's range widened to include 0
 *   (1 byte). scale = (max − min) / 255, and |x̂ − x| ≤ scale/2 + 2^-24·(|x| + scale/2)
 *   (the second term is the float32 rounding of x̂). An outlier widens the
 *   range and so the error of every element; zero is always exact.
 *
 * Non-finite elements cannot be encoded: they throw {@link TensorError}.
 */
export const tensorErrorBounds = {
  FP32: () => 0,
  FP16: (x: number) => (Math.abs(x) > fp16Max ? Math.abs(x) - fp16Max : Math.max(2 ** -11 * Math.abs(x), 2 ** -25)),
  INT8: (x: number, scale: number) => scale / 2 + 2 ** -24 * (Math.abs(x) + scale / 2),
} as const;

const bytesPerElement: Record<TensorEncoding, number> = { FP32: 4, FP16: 2, INT8: 1 };
const fp16Max = 65504;
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 → binary16 bits, round-to-nearest-even, saturating at ±65504. Input is finite. */
function toHalfBits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = ((bits >>> 23) & 0xff) - 127 + 15;
  const mantissa = bits & 0x7fffff;
  if (exponent >= 0x1f) return sign | 0x7bff;
  if (exponent <= 0) {
    if (exponent < -10) return sign;
    const significand = mantissa | 0x800000;
    const shift = 14 - exponent;
    let half = significand >>> shift;
    const rest = significand & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (exponent << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++;
  if (half >= 0x7c00) return sign | 0x7bff;
  return sign | half;
}

let halfTable: Float32Array | undefined;

/** binary16 bits → value, through a 64K-entry table built once. */
function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >>> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) table[h] = sign * mantissa * 2 ** -24;
    else if (exponent === 31) table[h] = mantissa ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else table[h] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  halfTable = table;
  return table;
}

function elementCount(name: string, shape: readonly number[]): number {
  let count = 1;
  for (const dim of shape) {
    if (!Number.isInteger(dim) || dim < 0) throw new TensorError(name, `shape [${shape.join(', ')}] has a dimension that is not a whole number ≥ 0`);
    count *= dim;
  }
  return count;
}

/** The smallest positive float32 that is ≥ `value`. */
function float32AtLeast(value: number): number {
  const rounded = Math.fround(value);
  if (rounded >= value && rounded > 0) return rounded;
  f32[0] = rounded;
  u32[0] = rounded > 0 ? u32[0]! + 1 : 1;
  return f32[0];
}

/** Int8 quantisation parameters over [min(values, 0), max(values, 0)]. */
function int8Parameters(values: Float32Array): { scale: number; zeroPoint: number } {
  let min = 0;
  let max = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v < min) min = v;
    else if (v > max) max = v;
  }
  if (max === min) return { scale: 1, zeroPoint: 0 };
  // The scale travels as an Avro float, so quantise with the float32 value the reader will see,
  // rounded up so that 255 steps always cover the range (float32 rounding could fall short).
  const scale = float32AtLeast((max - min) / 255);
  const zeroPoint = Math.min(127, Math.max(-128, Math.round(-128 - min / scale)));
  return { scale, zeroPoint };
}

/**
 * Encodes float32 elements (row-major, `shape`'s product in count) as a
 * {@link Tensor} record in the given encoding. See {@link tensorErrorBounds}.
 *
 * @example
 * const tensor = encodeTensor('dense/kernel', [16, 64], gradient, 'INT8');
 */
export function encodeTensor(name: string, shape: readonly number[], values: Float32Array, encoding: TensorEncoding): Tensor {
  const count = elementCount(name, shape);
  if (count !== values.length) {
    throw new TensorError(name, `shape [${shape.join(', ')}] holds ${count} elements, got ${values.length}`);
  }
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) throw new TensorError(name, `element ${i} is ${values[i]}; only finite values can be encoded`);
  }
  const tensor: Tensor = { name, shape: [...shape], encoding, scale: 1, zeroPoint: 0, bytes: Buffer.alloc(count * bytesPerElement[encoding]) };
  const bytes = tensor.bytes;
  switch (encoding) {
    case 'FP32':
      if (littleEndian) Buffer.from(values.buffer, values.byteOffset, values.byteLength).copy(bytes);
      else for (let i = 0; i < count; i++) bytes.writeFloatLE(values[i]!, i * 4);
      break;
    case 'FP16':
      for (let i = 0; i < count; i++) bytes.writeUInt16LE(toHalfBits(values[i]!), i * 2);
      break;
    case 'INT8': {
      const { scale, zeroPoint } = int8Parameters(values);
      tensor.scale = scale;
      tensor.zeroPoint = zeroPoint;
      for (let i = 0; i < count; i++) {
        const q = Math.round(values[i]! / scale) + zeroPoint;
        bytes.writeInt8(q < -128 ? -128 : q > 127 ? 127 : q, i);
      }
      break;
    }
    default:
      throw new TensorError(name, `unknown encoding '${String(encoding)}'; use FP32, FP16 or INT8`);
  }
  return tensor;
}

/** Decodes a {@link Tensor} record to float32 elements, checking that its bytes fit its shape and encoding. */
export function decodeTensor(tensor: Tensor): Float32Array {
  const width = bytesPerElement[tensor.encoding];
  if (width === undefined) throw new TensorError(tensor.name, `unknown encoding '${String(tensor.encoding)}'`);
  const count = elementCount(tensor.name, tensor.shape);
  if (tensor.bytes.length !== count * width) {
    throw new TensorError(tensor.name, `shape [${tensor.shape.join(', ')}] in ${tensor.encoding} needs ${count * width} bytes, got ${tensor.bytes.length}`);
  }
  const out = new Float32Array(count);
  const bytes = tensor.bytes;
  switch (tensor.encoding) {
    case 'FP32':
      if (littleEndian) new Uint8Array(out.buffer).set(bytes);
      else for (let i = 0; i < count; i++) out[i] = bytes.readFloatLE(i * 4);
      break;
    case 'FP16': {
      const table = halfToFloatTable();
      for (let i = 0; i < count; i++) out[i] = table[bytes.readUInt16LE(i * 2)]!;
      break;
    }
    case 'INT8': {
      const { scale, zeroPoint } = tensor;
      if (!Number.isFinite(scale) || scale <= 0) throw new TensorError(tensor.name, `INT8 scale must be finite and positive, got ${scale}`);
      for (let i = 0; i < count; i++) out[i] = (bytes.readInt8(i) - zeroPoint) * scale;
      break;
    }
  }
  return out;
}

/** Bytes per element of an encoding: 4, 2 or 1. */
export function encodedBytesPerElement(encoding: TensorEncoding): number {
  return bytesPerElement[encoding];
}
