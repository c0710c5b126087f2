import type { Message } from 'kafkajs';
import type { AvroCodec } from '../schemas/codec.js';
import type { OffsetRange, ParameterUpdate, Tensor } from '../schemas/types.js';

/** A record keyed and partitioned by its shard: the updates and model topics have one partition per shard. */
export function shardMessage(shard: number, value: Buffer): Message {
  return { key: String(shard), partition: shard, value };
}

/** The earliest and latest append time (ms) of some Kafka records. */
export function appendTimes(records: Iterable<{ readonly timestamp: string }>): { readonly firstAppendTime: number; readonly lastAppendTime: number } {
  let firstAppendTime = Number.POSITIVE_INFINITY;
  let lastAppendTime = 0;
  for (const { timestamp } of records) {
    const appended = Number(timestamp);
    if (appended < firstAppendTime) firstAppendTime = appended;
    if (appended > lastAppendTime) lastAppendTime = appended;
  }
  return { firstAppendTime, lastAppendTime };
}

/** What one batch tells every shard alike: a ParameterUpdate but its shard, base version, tensors and feature moments. */
export type UpdateBody = Omit<ParameterUpdate, 'shard' | 'baseVersion' | 'tensors' | 'featureMoments' | 'prequential'> & { readonly offsets: OffsetRange[] };

/** What only shard 0's update carries: the batch's feature moments and prequential scores. */
export type ShardZeroExtras = Pick<ParameterUpdate, 'featureMoments' | 'prequential'>;

const noExtras: ShardZeroExtras = { featureMoments: null, prequential: [] };

/**
 * The one builder of ParameterUpdate records: one per shard, each with that shard's base version and tensors
 * (none for an update that only counts dead letters), encoded and keyed by shard. The batch's feature moments and
 * prequential scores, if any, go to shard 0, which keeps the model's feature scaling and scores.
 */
export function updateMessages(
  body: UpdateBody,
  shardCount: number,
  baseVersion: (shard: number) => number,
  tensors: (shard: number) => Tensor[],
  codec: AvroCodec<ParameterUpdate>,
  shardZero: ShardZeroExtras = noExtras,
): Message[] {
  return Array.from({ length: shardCount }, (_, shard) =>
    shardMessage(shard, codec.encode({ ...body, shard, baseVersion: baseVersion(shard), tensors: tensors(shard), ...(shard === 0 ? shardZero : noExtras) })),
  );
}
