import { codecFor, type AvroCodec, type CodecOptions } from './codec.js';
import { BadRecordError, ConfigError, type RecordOrigin, type RecordResult } from './errors.js';
import type { TrainingSample } from './types.js';

/** What a training pipeline accepts as a sample. */
export interface SampleLimits {
  /** The exact length of `features`. */
  readonly featureCount: number;
  /**
   * How many targets the model has. 1 (the default): `label` must be set, or
   * `labels` must hold exactly one value. More: `labels` must hold that many,
   * or `label` is a class index (0 to the count − 1) and `labels` is empty.
   * 0: unlabelled samples are fine, and labels are only checked to be finite.
   */
  readonly labelCount?: number;
}

function firstNonFinite(values: readonly number[]): number {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) return i;
  }
  return -1;
}

/**
 * Checks that a decoded sample can be trained on: the configured feature count,
 * finite numbers only, labels that fit the model, a weight that is finite and
 * not negative. Returns the reason it cannot, or undefined.
 */
export function checkSample(sample: TrainingSample, limits: SampleLimits, origin?: RecordOrigin): BadRecordError | undefined {
  const { featureCount } = limits;
  const labelCount = limits.labelCount ?? 1;
  if (sample.features.length !== featureCount) {
    return new BadRecordError('FEATURE_COUNT', origin, `device '${sample.deviceId}' sent ${sample.features.length} features, the model takes ${featureCount}`);
  }
  const badFeature = firstNonFinite(sample.features);
  if (badFeature >= 0) {
    return new BadRecordError('NON_FINITE', origin, `features[${badFeature}] of device '${sample.deviceId}' is ${sample.features[badFeature]}`);
  }
  if (sample.label !== null && !Number.isFinite(sample.label)) {
    return new BadRecordError('NON_FINITE', origin, `label of device '${sample.deviceId}' is ${sample.label}`);
  }
  const badLabel = firstNonFinite(sample.labels);
  if (badLabel >= 0) {
    return new BadRecordError('NON_FINITE', origin, `labels[${badLabel}] of device '${sample.deviceId}' is ${sample.labels[badLabel]}`);
  }
  if (!Number.isFinite(sample.weight)) {
    return new BadRecordError('NON_FINITE', origin, `weight of device '${sample.deviceId}' is ${sample.weight}`);
  }
  if (sample.weight < 0) {
    return new BadRecordError('WEIGHT', origin, `weight of device '${sample.deviceId}' is ${sample.weight}; it must not be negative`);
  }
  if (labelCount === 1 && sample.label === null && sample.labels.length !== 1) {
    return new BadRecordError('LABEL', origin, `device '${sample.deviceId}' sent no label; the model needs one`);
  }
  if (labelCount > 1 && sample.labels.length !== labelCount && !isClassIndex(sample, labelCount)) {
    return new BadRecordError('LABEL', origin, `device '${sample.deviceId}' sent ${sample.labels.length} labels and label ${sample.label}; the model needs ${labelCount} labels, or a class index from 0 to ${labelCount - 1} as label`);
  }
  return undefined;
}

/** A sample of a model with several outputs that names its class by index (`label`) instead of one-hot `labels`. */
export function isClassIndex(sample: Pick<TrainingSample, 'label' | 'labels'>, labelCount: number): boolean {
  return sample.labels.length === 0 && sample.label !== null && Number.isInteger(sample.label) && sample.label >= 0 && sample.label < labelCount;
}

/** Options of a {@link SampleDecoder}: the framing of the input topic and what the model accepts. */
export interface SampleDecoderOptions extends CodecOptions, SampleLimits {}

/**
 * Samples in columns, what a gradient step takes: row `i`'s features are `features[i × featureCount …]`, its targets
 * (the label, the labels, or a class index as one-hot) `targets[i × targetCount …]`. Every array holds exactly
 * `length` rows.
 */
export interface SampleBatch {
  readonly length: number;
  readonly featureCount: number;
  readonly targetCount: number;
  readonly features: Float32Array;
  readonly targets: Float32Array;
  readonly weights: Float32Array;
  /** Milliseconds since the epoch, as in `TrainingSample.eventTime`. */
  readonly eventTimes: Float64Array;
}

/**
 * A batch being filled, one row at a time, by {@link SampleDecoder.decodeInto}: its arrays are allocated once, for
 * `capacity` rows. {@link batch} gives the rows filled so far, without a copy.
 */
export class SampleColumns {
  length = 0;
  readonly features: Float32Array;
  readonly targets: Float32Array;
  readonly weights: Float32Array;
  readonly eventTimes: Float64Array;

  constructor(
    readonly capacity: number,
    readonly featureCount: number,
    readonly targetCount: number,
  ) {
    this.features = new Float32Array(capacity * featureCount);
    this.targets = new Float32Array(capacity * targetCount);
    this.weights = new Float32Array(capacity);
    this.eventTimes = new Float64Array(capacity);
  }

  /** Adds a checked sample as the next row: features as they are, targets as a gradient step takes them. */
  push(sample: TrainingSample): void {
    const row = this.length;
    if (row >= this.capacity) throw new RangeError(`the batch is full: it holds ${this.capacity} samples`);
    if (sample.features.length !== this.featureCount) {
      throw new RangeError(`sample of device '${sample.deviceId}' has ${sample.features.length} features; the model takes ${this.featureCount}`);
    }
    this.features.set(sample.features, row * this.featureCount);
    const { targetCount: outputs } = this;
    const at = row * outputs;
    this.targets.fill(0, at, at + outputs);
    if (sample.labels.length === outputs) this.targets.set(sample.labels, at);
    else if (outputs > 1) this.targets[at + (sample.label ?? 0)] = 1; // a class index: one-hot
    else if (outputs === 1) this.targets[at] = sample.label ?? 0;
    this.weights[row] = sample.weight;
    this.eventTimes[row] = sample.eventTime;
    this.length = row + 1;
  }

  /** The rows filled so far, as views of this batch's arrays. */
  batch(): SampleBatch {
    const n = this.length;
    return {
      length: n,
      featureCount: this.featureCount,
      targetCount: this.targetCount,
      features: this.features.subarray(0, n * this.featureCount),
      targets: this.targets.subarray(0, n * this.targetCount),
      weights: this.weights.subarray(0, n),
      eventTimes: this.eventTimes.subarray(0, n),
    };
  }
}

/** Rows `start` (inclusive) to `end` of a batch, as views on its columns: the batch itself when that is all of it. */
export function batchRows(batch: SampleBatch, start: number, end: number): SampleBatch {
  if (start === 0 && end === batch.length) return batch;
  const { featureCount, targetCount } = batch;
  return {
    length: end - start,
    featureCount,
    targetCount,
    features: batch.features.subarray(start * featureCount, end * featureCount),
    targets: batch.targets.subarray(start * targetCount, end * targetCount),
    weights: batch.weights.subarray(start, end),
    eventTimes: batch.eventTimes.subarray(start, end),
  };
}

/** Checked samples in columns, for a model with `targetCount` outputs (tests, holdouts and other callers with objects). */
export function sampleBatchOf(samples: readonly TrainingSample[], featureCount: number, targetCount: number): SampleBatch {
  const columns = new SampleColumns(samples.length, featureCount, targetCount);
  for (const sample of samples) columns.push(sample);
  return columns.batch();
}

const confluentHeaderBytes = 5;

/**
 * Reads the Avro binary encoding of a `TrainingSample` (schemas/training-sample.avsc, field by field) straight into
 * the next row of a {@link SampleColumns}: no JavaScript object per record. It takes only what it can take for sure
 * (a well-formed record of this schema whose numbers are all finite and whose labels fit the model) and leaves
 * everything else to the schema-driven decoder, which names the fault: the two agree on every record they both take.
 */
/** Float blocks are copied here, 4-byte aligned, and read as float32s (Avro's floats are little-endian, like the host). */
const scratch = new Float32Array(1024);
const scratchBytes = new Uint8Array(scratch.buffer);
const hostIsLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

class ColumnReader {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private end = 0;

  /** True when `bytes[start …]` is a sample it could read to the last byte, written as row `columns.length` (not yet counted). */
  read(bytes: Buffer, start: number, columns: SampleColumns): boolean {
    this.buf = bytes;
    this.pos = start;
    this.end = bytes.length;
    const row = columns.length;
    if (!this.skipString()) return false; // deviceId
    const eventTime = this.readLong();
    if (Number.isNaN(eventTime)) return false;
    if (this.readFloats(columns.features, row * columns.featureCount, columns.featureCount) !== columns.featureCount) return false;
    const labelBranch = this.readLong();
    let label: number | null = null;
    if (labelBranch === 1) {
      label = this.readFloat();
      if (Number.isNaN(label)) return false;
    } else if (labelBranch !== 0) return false;
    const outputs = columns.targetCount;
    const at = row * outputs;
    const labels = this.readFloats(columns.targets, at, outputs);
    if (Number.isNaN(labels)) return false;
    if (labels === 0 && outputs > 0) {
      // No labels: `label` is the target of one output, or the class index of several.
      if (label === null) return false;
      if (outputs === 1) columns.targets[at] = label;
      else {
        if (!Number.isInteger(label) || label < 0 || label >= outputs) return false;
        columns.targets.fill(0, at, at + outputs);
        columns.targets[at + label] = 1;
      }
    } else if (labels !== outputs && outputs > 0) return false;
    const weight = this.readFloat();
    if (Number.isNaN(weight) || weight < 0) return false;
    if (!this.skipAttributes() || this.pos !== this.end) return false;
    columns.weights[row] = weight;
    columns.eventTimes[row] = eventTime;
    return true;
  }

  /** A zig-zag varint of up to 7 bytes (|n| < 2^48, exact); NaN for anything longer or cut short. */
  private readLong(): number {
    let n = 0;
    let scale = 1;
    for (let i = 0; i < 7; i++) {
      if (this.pos >= this.end) return Number.NaN;
      const byte = this.buf[this.pos++]!;
      n += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
      scale *= 128;
    }
    return Number.NaN;
  }

  /** A finite float; NaN for a non-finite one or one cut short. */
  private readFloat(): number {
    if (this.pos + 4 > this.end) return Number.NaN;
    const value = this.buf.readFloatLE(this.pos);
    this.pos += 4;
    return value - value === 0 ? value : Number.NaN;
  }

  /**
   * An array of finite floats, written to `target[at …]` while there is room for `room` of them: how many there
   * were (more than `room` counts, unwritten), or NaN if one is not finite or the array is malformed.
   */
  private readFloats(target: Float32Array, at: number, room: number): number {
    let total = 0;
    for (;;) {
      let count = this.readLong();
      if (Number.isNaN(count)) return Number.NaN;
      if (count === 0) return total;
      if (count < 0) {
        count = -count;
        if (Number.isNaN(this.readLong())) return Number.NaN; // the block's size in bytes
      }
      if (this.pos + 4 * count > this.end) return Number.NaN;
      if (hostIsLittleEndian && count <= scratch.length) {
        const { buf, pos } = this;
        for (let b = 0; b < 4 * count; b++) scratchBytes[b] = buf[pos + b]!;
        this.pos = pos + 4 * count;
        for (let k = 0; k < count; k++, total++) {
          const value = scratch[k]!;
          if (value - value !== 0) return Number.NaN;
          if (total < room) target[at + total] = value;
        }
        continue;
      }
      for (let k = 0; k < count; k++, total++) {
        const value = this.buf.readFloatLE(this.pos);
        this.pos += 4;
        if (value - value !== 0) return Number.NaN;
        if (total < room) target[at + total] = value;
      }
    }
  }

  private skipString(): boolean {
    const length = this.readLong();
    if (!(length >= 0) || this.pos + length > this.end) return false;
    this.pos += length;
    return true;
  }

  /** The map of string attributes, unread. */
  private skipAttributes(): boolean {
    for (;;) {
      let count = this.readLong();
      if (Number.isNaN(count)) return false;
      if (count === 0) return true;
      if (count < 0) {
        count = -count;
        if (Number.isNaN(this.readLong())) return false;
      }
      for (let k = 0; k < count; k++) if (!this.skipString() || !this.skipString()) return false;
    }
  }
}

/**
 * Decodes and checks `TrainingSample` records in one step: the hot path of
 * every worker lane. Never throws for bad input: a record that cannot be
 * trained on comes back with the {@link BadRecordError} to dead-letter it with.
 *
 * @example
 * const samples = new SampleDecoder({ featureCount: 16, framing: 'confluent', schemaId: 1 });
 * const result = samples.decode(message.value, { topic, partition, offset: message.offset });
 */
export class SampleDecoder {
  private readonly codec: AvroCodec<TrainingSample>;
  private readonly limits: SampleLimits;
  private readonly reader = new ColumnReader();
  /** Where the Avro body starts in a record the column reader may take; -1 for none (a writer schema id of its own). */
  private readonly bodyStart: (bytes: Buffer) => number;

  constructor(options: SampleDecoderOptions) {
    if (!Number.isInteger(options.featureCount) || options.featureCount <= 0) {
      throw new ConfigError('featureCount', `must be a positive whole number, got ${String(options.featureCount)}`);
    }
    const labelCount = options.labelCount ?? 1;
    if (!Number.isInteger(labelCount) || labelCount < 0) {
      throw new ConfigError('labelCount', `must be a whole number from 0 up, got ${String(options.labelCount)}`);
    }
    this.codec = codecFor('TrainingSample', options);
    this.limits = { featureCount: options.featureCount, labelCount };
    const maxRecordBytes = options.maxRecordBytes ?? Number.POSITIVE_INFINITY;
    const schemaId = options.schemaId ?? -1;
    this.bodyStart =
      this.codec.framing === 'raw'
        ? (bytes) => (bytes.length <= maxRecordBytes ? 0 : -1)
        : (bytes) => (bytes.length > confluentHeaderBytes && bytes.length <= maxRecordBytes && bytes[0] === 0 && bytes.readInt32BE(1) === schemaId ? confluentHeaderBytes : -1);
  }

  /** The length of `features` it takes. */
  get featureCount(): number {
    return this.limits.featureCount;
  }

  /** How many targets a sample gives the model (see {@link SampleLimits.labelCount}). */
  get labelCount(): number {
    return this.limits.labelCount ?? 1;
  }

  decode(bytes: Buffer | null | undefined, origin?: RecordOrigin): RecordResult<TrainingSample> {
    const decoded = this.codec.decode(bytes, origin);
    if (!decoded.ok) return decoded;
    const error = checkSample(decoded.value, this.limits, origin);
    return error ? { ok: false, error } : decoded;
  }

  /**
   * Decodes and checks one record into the next row of `columns` (the hot path of a worker lane: no object per
   * sample); returns the reason it cannot be trained on instead, and then leaves `columns.length` as it was. Nothing is
   * written past the row.
   */
  decodeInto(bytes: Buffer | null | undefined, columns: SampleColumns, origin?: RecordOrigin): BadRecordError | undefined {
    if (columns.length >= columns.capacity) throw new RangeError(`the batch is full: it holds ${columns.capacity} samples`);
    if (columns.featureCount !== this.featureCount || columns.targetCount !== this.labelCount) {
      throw new RangeError(`columns of ${columns.featureCount} features and ${columns.targetCount} targets, for a decoder of ${this.featureCount} and ${this.labelCount}`);
    }
    const start = bytes && bytes.length > 0 ? this.bodyStart(bytes) : -1;
    if (start >= 0 && this.reader.read(bytes!, start, columns)) {
      columns.length += 1;
      return undefined;
    }
    // Anything the column reader did not take for sure: the schema-driven decoder decides, and names the fault.
    const decoded = this.decode(bytes, origin);
    if (!decoded.ok) return decoded.error;
    columns.push(decoded.value);
    return undefined;
  }
}
