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

/** What one batch tells every shard alike: a ParameterUpdate but its shard, base version and tensors. */
export type UpdateBody = Omit<ParameterUpdate, 'shard' | 'baseVersion' | 'tensors'> & { readonly offsets: OffsetRange[] };

/**
 * The one builder of ParameterUpdate records: one per shard, each with that shard's base version and tensors
 * (none for an update that only counts dead letters), encoded and keyed by shard.
 */
export function updateMessages(body: UpdateBody, shardCount: number, baseVersion: (shard: number) => number, tensors: (shard: number) => Tensor[], codec: AvroCodec<ParameterUpdate>): Message[] {
  return Array.from({ length: shardCount }, (_, shard) => shardMessage(shard, codec.encode({ ...body, shard, baseVersion: baseVersion(shard), tensors: tensors(shard) })));
}
