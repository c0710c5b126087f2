import type { Admin } from 'kafkajs';
import { SourceError } from './errors.js';

/**
 * Where a lane starts when its consumer group has no committed offset for the
 * partition (always, without a group): the first or the next record, the first
 * record at or after a time (ms since the epoch), or explicit offsets keyed
 * `topic:partition`.
 */
export type StartPosition = 'earliest' | 'latest' | { readonly timestamp: number } | { readonly offsets: Readonly<Record<string, number>> };

/**
 * Where a bounded read ends (exclusive), captured at the start: the end of each
 * partition (`true`), the first record at or after a time, or explicit offsets
 * keyed `topic:partition` (a partition missing from them ends at its end).
 */
export type EndPosition = true | { readonly timestamp: number } | { readonly offsets: Readonly<Record<string, number>> };

/** A partition's key in the maps of the source and in explicit offsets: `topic:partition`. */
export const laneKey = (topic: string, partition: number): string => `${topic}:${partition}`;

/** The topic and partition of a {@link laneKey} (a topic name may hold colons). */
export function parseLaneKey(key: string): { readonly topic: string; readonly partition: number } {
  const separator = key.lastIndexOf(':');
  return { topic: key.slice(0, separator), partition: Number(key.slice(separator + 1)) };
}

/** The offset `start` names for one partition. */
export async function startOffsetOf(admin: Admin, topic: string, partition: number, start: StartPosition): Promise<number> {
  if (start === 'earliest' || start === 'latest') {
    const offsets = await admin.fetchTopicOffsets(topic);
    const found = offsets.find((p) => p.partition === partition);
    return Number(start === 'earliest' ? found?.low ?? 0 : found?.high ?? 0);
  }
  if ('timestamp' in start) {
    const [byTime, ends] = await Promise.all([admin.fetchTopicOffsetsByTimestamp(topic, start.timestamp), admin.fetchTopicOffsets(topic)]);
    const offset = Number(byTime.find((p) => p.partition === partition)?.offset ?? -1);
    // -1: no record at or after that time; start at the end.
    return offset >= 0 ? offset : Number(ends.find((p) => p.partition === partition)?.high ?? 0);
  }
  const explicit = start.offsets[laneKey(topic, partition)];
  if (explicit === undefined) throw new SourceError(`start.offsets has no offset for ${laneKey(topic, partition)}`);
  return explicit;
}

/** The offset each partition of `topic` ends at (exclusive) under `end`, keyed by {@link laneKey}; never past the partition's end. */
export async function endOffsetsOf(admin: Admin, topic: string, end: EndPosition): Promise<Map<string, number>> {
  const [byTime, ends] = await Promise.all([typeof end === 'object' && 'timestamp' in end ? admin.fetchTopicOffsetsByTimestamp(topic, end.timestamp) : [], admin.fetchTopicOffsets(topic)]);
  const offsets = new Map<string, number>();
  for (const { partition, high } of ends) {
    const key = laneKey(topic, partition);
    const atTime = Number(byTime.find((p) => p.partition === partition)?.offset ?? -1);
    const explicit = typeof end === 'object' && 'offsets' in end ? end.offsets[key] : undefined;
    offsets.set(key, Math.min(Number(high), explicit ?? (atTime >= 0 ? atTime : Number(high))));
  }
  return offsets;
}

/**
 * The group's committed offset for one partition, -1 without one. Stable: a transaction's offsets reach the group
 * only once the group coordinator has handled its commit marker, after the commit returned and after the next owner's
 * fencing; until then a plain fetch answers the offset from before the commit, and its records would be trained
 * again. The broker answers UNSTABLE_OFFSET_COMMIT meanwhile (retriable).
 */
export async function stableCommittedOffset(admin: Admin, groupId: string, topic: string, partition: number): Promise<number> {
  const [committed] = await admin.fetchOffsets({ groupId, topics: [topic], requireStable: true });
  return Number(committed?.partitions.find((p) => p.partition === partition)?.offset ?? -1);
}
