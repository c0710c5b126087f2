import { Observable, type OperatorFunction } from 'rxjs';
import { z } from 'zod';
import { codecFor, type CodecOptions } from '../schemas/codec.js';
import { decodeTensor, encodeTensor } from '../schemas/tensorCodec.js';
import { sampleBatchOf, type SampleBatch } from '../schemas/sampleDecoder.js';
import type { FeatureMoments, OffsetRange, Tensor, TensorEncoding, TrainingSample } from '../schemas/types.js';
import type { Outputs } from './checkpoint.js';
import type { Decoded } from './decode.js';
import type { KafkaRecord } from './lane.js';
import { appendTimes, updateMessages, type ShardBase, type UpdateSigner } from './parameterUpdates.js';
import { validateOptions } from './validateOptions.js';
import { windowsOf, type SampleScores } from './prequential.js';

/** One variable's gradient, summed over a batch: float32 elements in row-major order. */
export interface TensorGradient {
  readonly name: string;
  readonly shape: readonly number[];
  readonly values: Float32Array;
}

/** What one gradient computation yields. */
export interface StepGradients {
  readonly gradients: readonly TensorGradient[];
  /** The sum of the per-sample losses (weighted), before the step. */
  readonly lossSum: number;
  readonly sampleCount: number;
  /** With `model.normalize`: the moments of the batch's raw features, for shard 0. */
  readonly featureMoments?: FeatureMoments;
  /** Each sample's scores before the step (prequential evaluation), for shard 0. */
  readonly scores?: SampleScores;
}

/** A model that can compute gradients: the worker's replica. It must dispose every tensor it makes. */
export interface GradientModel {
  readonly shardCount: number;
  gradients(batch: SampleBatch): StepGradients;
  shardOf(variableName: string): number;
  /** The snapshot of `shard` that the current weights come from. */
  base(shard: number): ShardBase;
}

/** Options of {@link gradientStep}. */
export interface GradientStepOptions {
  readonly model: GradientModel;
  /** The experiment namespace, written into each update. */
  readonly namespace: string;
  readonly workerId: string;
  /** Where updates go: `<namespace>.updates`, one partition per shard. */
  readonly updatesTopic: string;
  /** How gradients travel. INT8 and FP16 carry their rounding error into the next step (error feedback). Default FP32. */
  readonly encoding?: TensorEncoding;
  /** The framing of the ParameterUpdate records. Default raw. */
  readonly codec?: CodecOptions;
  readonly now?: () => number;
  /** Sum the samples' prequential scores per tumbling window of this many ms of event time (default 10,000). */
  readonly prequentialWindowMs?: number;
  /** Signs each update record (`updateSigning`): the headers it returns go with the record. */
  readonly sign?: UpdateSigner;
}

const optionsSchema = z.object({
  model: z.custom<GradientModel>((value) => typeof value === 'object' && value !== null && 'gradients' in value, 'must be a GradientModel'),
  namespace: z.string().min(1),
  workerId: z.string().min(1),
  updatesTopic: z.string().min(1),
  encoding: z.enum(['FP32', 'FP16', 'INT8']).default('FP32'),
  prequentialWindowMs: z.number().int().positive().default(10_000),
});

/**
 * Encodes gradients, carrying each variable's rounding residual into its next gradient (error feedback), so that
 * FP16 and INT8 do not bias training. One per subscription, that is, per lane.
 */
class ErrorFeedbackEncoder {
  private readonly residuals = new Map<string, Float32Array>();

  constructor(private readonly encoding: TensorEncoding) {}

  encode(gradient: TensorGradient): Tensor {
    if (this.encoding === 'FP32') return encodeTensor(gradient.name, gradient.shape, gradient.values, 'FP32');
    const corrected = new Float32Array(gradient.values);
    const carried = this.residuals.get(gradient.name);
    if (carried) for (let i = 0; i < corrected.length; i++) corrected[i]! += carried[i]!;
    const tensor = encodeTensor(gradient.name, gradient.shape, corrected, this.encoding);
    const sent = decodeTensor(tensor);
    for (let i = 0; i < corrected.length; i++) corrected[i]! -= sent[i]!;
    this.residuals.set(gradient.name, corrected);
    return tensor;
  }
}

/**
 * Where a batch's rows come from: one partition, and row `i`'s offset (`offsets[i]`) and append time in ms
 * (`appendTimes[i]`). Columns, not records: a worker lane decodes each record as it arrives and keeps no record
 * object until its window trains.
 */
export interface RecordColumns {
  readonly topic: string;
  readonly partition: number;
  readonly offsets: Float64Array;
  readonly appendTimes: Float64Array;
}

/** A micro-batch of one lane: its samples in columns, and the record each row came from. */
export interface TrainingBatch {
  readonly samples: SampleBatch;
  readonly records: RecordColumns;
}

/** The columns of `records`, one partition's, in order. */
function recordColumnsOf(records: readonly KafkaRecord[]): RecordColumns {
  return {
    topic: records[0]?.topic ?? '',
    partition: records[0]?.partition ?? 0,
    offsets: Float64Array.from(records, (record) => Number(record.offset)),
    appendTimes: Float64Array.from(records, (record) => Number(record.timestamp)),
  };
}

/**
 * A batch of samples decoded one by one (by the `decode` operator), in columns: what `gradientStep` takes. A worker
 * lane skips the objects and decodes its records straight into columns (`SampleDecoder.decodeInto`).
 */
export function trainingBatchOf(decoded: readonly Decoded<TrainingSample>[], featureCount: number, targetCount: number): TrainingBatch {
  return { samples: sampleBatchOf(decoded.map((d) => d.value), featureCount, targetCount), records: recordColumnsOf(decoded.map((d) => d.record)) };
}

/**
 * The batch's offsets as runs of consecutive ones. Not one span from first to last: a rejected record inside
 * it is accounted for by its own dead-letter output, and must not count as processed before that is made.
 */
function recordSpans(offsets: Float64Array): Array<{ first: number; last: number }> {
  const spans: Array<{ first: number; last: number }> = [];
  for (const offset of offsets) {
    const last = spans[spans.length - 1];
    if (last && offset === last.last + 1) last.last = offset;
    else spans.push({ first: offset, last: offset });
  }
  return spans;
}

/** The update's input offsets: the same runs, so they hold exactly the batch's samples (an audit counts on it). */
function offsetRanges({ topic, partition }: RecordColumns, spans: ReadonlyArray<{ first: number; last: number }>): OffsetRange[] {
  return spans.map(({ first, last }) => ({ topic, partition, firstOffset: first, lastOffset: last }));
}

/**
 * One gradient step per micro-batch: computes the gradients on the replica and
 * emits, as `Outputs` for `checkpoint`, one `ParameterUpdate` per shard (keyed
 * and partitioned by shard) with the shard's base version, the sample count, the
 * loss sum and the input offsets the batch covers.
 *
 * With `FP16` or `INT8`, each variable's rounding residual is added to its next
 * gradient (error feedback), so compression does not bias training; the
 * residuals live per subscription, that is, per lane.
 */
export function gradientStep(options: GradientStepOptions): OperatorFunction<TrainingBatch, Outputs> {
  const { encoding, prequentialWindowMs } = validateOptions('gradientStep', optionsSchema, options);
  const { model, namespace, workerId, updatesTopic, sign } = options;
  const codec = codecFor('ParameterUpdate', options.codec);
  const now = options.now ?? Date.now;
  return (source) =>
    new Observable<Outputs>((subscriber) => {
      const encoder = new ErrorFeedbackEncoder(encoding);

      const step = ({ samples, records }: TrainingBatch): Outputs => {
        if (samples.length !== records.offsets.length) throw new RangeError(`a batch of ${samples.length} samples from ${records.offsets.length} records`);
        const { gradients, lossSum, sampleCount, featureMoments, scores } = model.gradients(samples);
        const perShard = Array.from({ length: model.shardCount }, () => [] as Tensor[]);
        for (const gradient of gradients) perShard[model.shardOf(gradient.name)]!.push(encoder.encode(gradient));
        const covers = recordSpans(records.offsets);
        const body = { namespace, workerId, sampleCount, lossSum, deadLettered: 0, offsets: offsetRanges(records, covers), ...appendTimes(records.appendTimes), createdAt: now() };
        const messages = updateMessages(body, model.shardCount, (shard) => model.base(shard), (shard) => perShard[shard]!, codec, {
          featureMoments: featureMoments ?? null,
          prequential: scores ? windowsOf(samples.eventTimes, scores, prequentialWindowMs) : [],
        }, sign);
        return { messages: [{ topic: updatesTopic, messages }], covers };
      };

      return source.subscribe({
        next: (batch) => {
          if (batch.records.offsets.length === 0) return;
          let outputs: Outputs;
          try {
            outputs = step(batch);
          } catch (error) {
            subscriber.error(error);
            return;
          }
          subscriber.next(outputs);
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => subscriber.complete(),
      });
    });
}
