/**
 * TypeScript shapes of the records in `schemas/*.avsc`. The .avsc files are the
 * contract; these mirror them field for field. Avro `long` is a JS number (safe
 * up to 2^53, which covers offsets, counters and millisecond timestamps), and
 * `timestamp-millis` fields are milliseconds since the epoch.
 */

export type TensorEncoding = 'FP32' | 'FP16' | 'INT8';

/** One named tensor, its elements flat in row-major order. See `tensor.avsc`. */
export interface Tensor {
  name: string;
  shape: number[];
  encoding: TensorEncoding;
  /** INT8 only: step between quantised values; 1 otherwise. */
  scale: number;
  /** INT8 only: the quantised value of 0.0; 0 otherwise. */
  zeroPoint: number;
  bytes: Buffer;
}

/** An inclusive range of offsets of one topic partition. */
export interface OffsetRange {
  topic: string;
  partition: number;
  firstOffset: number;
  lastOffset: number;
}

/** One offset of one topic partition. */
export interface PartitionOffset {
  topic: string;
  partition: number;
  offset: number;
}

/** Per-feature running moments of raw features, merged with Chan's formula. See `feature-moments.avsc`. */
export interface FeatureMoments {
  count: number;
  mean: number[];
  m2: number[];
}

/** Prequential scores of one tumbling event-time window, as sums. See `prequential-window.avsc`. */
export interface PrequentialWindow {
  /** ms since the epoch */
  start: number;
  samples: number;
  lossSum: number;
  absErrorSum: number;
  squaredErrorSum: number;
  correct: number;
  /** ms since the epoch */
  lastEventTime: number;
}

/** One IoT reading used for training. See `training-sample.avsc`. */
export interface TrainingSample {
  deviceId: string;
  /** ms since the epoch */
  eventTime: number;
  features: number[];
  label: number | null;
  labels: number[];
  weight: number;
  attributes: Record<string, string>;
}

/** A worker's gradients for one shard. See `parameter-update.avsc`. */
export interface ParameterUpdate {
  namespace: string;
  shard: number;
  workerId: string;
  baseVersion: number;
  sampleCount: number;
  lossSum: number;
  deadLettered: number;
  offsets: OffsetRange[];
  /** ms since the epoch */
  firstAppendTime: number;
  /** ms since the epoch */
  lastAppendTime: number;
  /** ms since the epoch */
  createdAt: number;
  tensors: Tensor[];
  /** With model.normalize, on shard 0's update: the raw features' moments over the covered samples. */
  featureMoments: FeatureMoments | null;
  /** On shard 0's update: the covered samples' prequential scores per event-time window. */
  prequential: PrequentialWindow[];
}

/** One shard's parameters at one version. See `model-snapshot.avsc`. */
export interface ModelSnapshot {
  namespace: string;
  shard: number;
  shardCount: number;
  version: number;
  modelConfig: string;
  tensors: Tensor[];
  optimizerState: Tensor[];
  samplesApplied: number;
  updatesApplied: number;
  updatesDroppedStale: number;
  samplesDroppedStale: number;
  deadLettered: number;
  lossSum: number;
  appliedOffsets: PartitionOffset[];
  freshnessMs: number;
  /** ms since the epoch */
  createdAt: number;
  /** The first offset of `<ns>.updates[shard]` not yet taken in; -1 from older writers. */
  updatesOffset: number;
  updatesRefused: number;
  samplesRefused: number;
  /** updatesRefused by reason code. */
  refusedByReason: Record<string, number>;
  /** With model.normalize, on shard 0: the merged moments of every applied sample's raw features. */
  featureMoments: FeatureMoments | null;
  /** Staleness of the updates with samples taken in, in power-of-two buckets (index 0: staleness 0; k: 2^(k−1) to 2^k − 1). */
  stalenessCounts: number[];
  stalenessMax: number;
  /** On shard 0: the prequential scores of the most recent event-time windows, oldest first. */
  prequential: PrequentialWindow[];
  prequentialWindowMs: number;
  /** ms since the epoch: windows ending at or before it are closed. */
  eventTimeWatermark: number;
}

/** An input record that could not be used, with the reason. See `dead-letter.avsc`. */
export interface DeadLetter {
  topic: string;
  partition: number;
  offset: number;
  key: Buffer | null;
  value: Buffer | null;
  /** ms since the epoch */
  recordTimestamp: number;
  errorCode: string;
  errorMessage: string;
  /** ms since the epoch */
  deadLetteredAt: number;
  /** The original value's size in bytes; -1 for a tombstone or from older writers. */
  valueSize: number;
  /** `value` holds only the first bytes of the original. */
  valueTruncated: boolean;
  /** SHA-256 of the original value, lowercase hex; empty for a tombstone. */
  valueSha256: string;
}

/** The records that travel on streamgrad's topics, by Avro name. */
export interface RecordTypes {
  TrainingSample: TrainingSample;
  ParameterUpdate: ParameterUpdate;
  ModelSnapshot: ModelSnapshot;
  DeadLetter: DeadLetter;
}

export type RecordName = keyof RecordTypes;
