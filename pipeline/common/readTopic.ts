import type { Kafka } from 'kafkajs';
import { lastValueFrom, mergeMap, tap, type Observable } from 'rxjs';
import { fromKafka, type EndPosition, type StartPosition } from '../../operators/fromKafka.js';
import type { KafkaRecord } from '../../operators/lane.js';

/** Options of {@link readTopic}. */
export interface ReadTopicOptions {
  /** Which partitions (default all). */
  readonly partitions?: readonly number[];
  /** Where to start (default `earliest`). */
  readonly start?: StartPosition;
  /** Where to stop, exclusive (default the end offsets taken when the read starts). */
  readonly end?: EndPosition;
}

/** Calls `visit` for each record of the lanes of `source`, acknowledging it; resolves when the source completes. */
async function visitEach(source: ReturnType<typeof fromKafka>, visit: (record: KafkaRecord) => void): Promise<void> {
  await lastValueFrom(
    source.pipe(
      mergeMap((lane) =>
        lane.records.pipe(
          tap((record) => {
            visit(record);
            lane.ack(record.offset);
          }),
        ),
      ),
    ),
    { defaultValue: undefined },
  );
}

/**
 * Reads the committed records of `topic` (read_committed, no consumer group)
 * once, from `start` to `end`, calling `visit` for each, in offset order
 * within a partition. Memory stays bounded: each record is let go after `visit`.
 */
export async function readTopic(kafka: Kafka, topic: string, visit: (record: KafkaRecord) => void, options: ReadTopicOptions = {}): Promise<void> {
  await visitEach(fromKafka({ kafka, topics: [topic], bounded: options.end ?? true, start: options.start ?? 'earliest', ...(options.partitions ? { partitions: options.partitions } : {}) }), visit);
}

/**
 * Follows `topic` from its start (read_committed, no consumer group) and calls `visit` for each record as it comes,
 * until `until` emits; resolves then. For tails that keep the latest of something (reports, counts).
 */
export async function tailTopic(kafka: Kafka, topic: string, visit: (record: KafkaRecord) => void, until: Observable<unknown>): Promise<void> {
  await visitEach(fromKafka({ kafka, topics: [topic], until }), visit);
}
