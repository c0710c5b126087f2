import fc from 'fast-check';
import { codecFor, type DeadLetter, type FeatureMoments, type PrequentialWindow, type ModelSnapshot, type OffsetRange, type ParameterUpdate, type PartitionOffset, type Tensor, type TrainingSample } from '../../schemas/index.js';

/** fast-check generators for every streamgrad record, covering each field's whole domain. */
const text = fc.string({ unit: 'grapheme', maxLength: 24 });
const float32 = fc.float({ noNaN: true, noDefaultInfinity: true });
const double = fc.double({ noNaN: true, noDefaultInfinity: true });
const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
// Avro longs as JS numbers: from -2^52 (the lowest avsc encodes exactly) to 2^53 - 2 (the highest it accepts).
const long = fc.integer({ min: -(2 ** 52), max: 2 ** 53 - 2 });
const nat = fc.integer({ min: 0, max: 2 ** 53 - 2 });
const bytes = fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a));

export const tensorArb: fc.Arbitrary<Tensor> = fc.record({
  name: text,
  shape: fc.array(fc.nat(1000), { maxLength: 4 }),
  encoding: fc.constantFrom('FP32' as const, 'FP16' as const, 'INT8' as const),
  scale: float32,
  zeroPoint: int32,
  bytes,
});

const offsetRangeArb: fc.Arbitrary<OffsetRange> = fc.record({ topic: text, partition: int32, firstOffset: long, lastOffset: long });
const featureMomentsArb: fc.Arbitrary<FeatureMoments> = fc.record({ count: nat, mean: fc.array(double, { maxLength: 8 }), m2: fc.array(double, { maxLength: 8 }) });
const prequentialWindowArb: fc.Arbitrary<PrequentialWindow> = fc.record({ start: long, samples: nat, lossSum: double, absErrorSum: double, squaredErrorSum: double, correct: nat, lastEventTime: long });
const partitionOffsetArb: fc.Arbitrary<PartitionOffset> = fc.record({ topic: text, partition: int32, offset: long });

export const trainingSampleArb: fc.Arbitrary<TrainingSample> = fc.record({
  deviceId: text,
  eventTime: long,
  features: fc.array(float32, { maxLength: 32 }),
  label: fc.option(float32, { nil: null }),
  labels: fc.array(float32, { maxLength: 8 }),
  weight: float32,
  attributes: fc.dictionary(text, text, { maxKeys: 4 }),
});

export const parameterUpdateArb: fc.Arbitrary<ParameterUpdate> = fc.record({
  namespace: text,
  shard: int32,
  workerId: text,
  baseVersion: long,
  sampleCount: nat,
  lossSum: double,
  deadLettered: nat,
  offsets: fc.array(offsetRangeArb, { maxLength: 4 }),
  firstAppendTime: long,
  lastAppendTime: long,
  createdAt: long,
  tensors: fc.array(tensorArb, { maxLength: 4 }),
  featureMoments: fc.option(featureMomentsArb, { nil: null }),
  prequential: fc.array(prequentialWindowArb, { maxLength: 3 }),
});

export const modelSnapshotArb: fc.Arbitrary<ModelSnapshot> = fc.record({
  namespace: text,
  shard: int32,
  shardCount: int32,
  version: long,
  modelConfig: fc.json(),
  tensors: fc.array(tensorArb, { maxLength: 4 }),
  optimizerState: fc.array(tensorArb, { maxLength: 4 }),
  samplesApplied: nat,
  updatesApplied: nat,
  updatesDroppedStale: nat,
  samplesDroppedStale: nat,
  deadLettered: nat,
  lossSum: double,
  appliedOffsets: fc.array(partitionOffsetArb, { maxLength: 4 }),
  freshnessMs: nat,
  createdAt: long,
  updatesOffset: long,
  updatesRefused: nat,
  samplesRefused: nat,
  refusedByReason: fc.dictionary(text, nat, { maxKeys: 3 }),
  featureMoments: fc.option(featureMomentsArb, { nil: null }),
  stalenessCounts: fc.array(nat, { maxLength: 8 }),
  stalenessMax: nat,
  prequential: fc.array(prequentialWindowArb, { maxLength: 3 }),
  prequentialWindowMs: nat,
  eventTimeWatermark: long,
});

export const deadLetterArb: fc.Arbitrary<DeadLetter> = fc.record({
  topic: text,
  partition: int32,
  offset: long,
  key: fc.option(bytes, { nil: null }),
  value: fc.option(bytes, { nil: null }),
  recordTimestamp: long,
  errorCode: text,
  errorMessage: text,
  deadLetteredAt: long,
  valueSize: long,
  valueTruncated: fc.boolean(),
  valueSha256: text,
});

/** A valid 16-feature sample, as a simulator would send it. */
export function sample16(overrides: Partial<TrainingSample> = {}): TrainingSample {
  return {
    deviceId: 'device-7',
    eventTime: 1_790_000_000_000,
    features: Array.from({ length: 16 }, (_, i) => Math.fround(Math.sin(i))),
    label: 0.5,
    labels: [],
    weight: 1,
    attributes: { site: 'north' },
    ...overrides,
  };
}

/** The stream of {@link sineReading}: how many devices, the label function, features after sin and cos. */
export interface SineOptions {
  readonly devices: number;
  readonly label: (i: number) => number;
  readonly extra?: readonly number[];
}

/**
 * Record `i` of an input topic of {@link sineReading}s, keyed by device; where `corrupt(i)` holds, the value is not
 * a sample at all (a dead letter to be).
 */
export function sineRecord(options: SineOptions & { readonly corrupt?: (i: number) => boolean }): (i: number) => { key: string; value: Buffer } {
  const samples = codecFor('TrainingSample');
  return (i) => ({ key: `d${i % options.devices}`, value: options.corrupt?.(i) ? Buffer.from('corrupt') : samples.encode(sineReading(i, options)) });
}

/**
 * Reading `i` of a deterministic stream: device `d<i mod devices>`, features
 * `[sin i, cos i, …extra]`, labelled by `label(i)`. The process-kill tests
 * train on it; what they check is the accounting, not the model.
 */
export function sineReading(i: number, options: SineOptions): TrainingSample {
  return {
    deviceId: `d${i % options.devices}`,
    eventTime: i,
    features: [Math.sin(i), Math.cos(i), ...(options.extra ?? [])].map(Math.fround),
    label: Math.fround(options.label(i)),
    labels: [],
    weight: 1,
    attributes: {},
  };
}
