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
  }

  decode(bytes: Buffer | null | undefined, origin?: RecordOrigin): RecordResult<TrainingSample> {
    const decoded = this.codec.decode(bytes, origin);
    if (!decoded.ok) return decoded;
    const error = checkSample(decoded.value, this.limits, origin);
    return error ? { ok: false, error } : decoded;
  }
}
