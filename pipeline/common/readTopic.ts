import type { Kafka } from 'kafkajs';
import { lastValueFrom, mergeMap, tap } from 'rxjs';
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

/**
 * Reads the committed records of `topic` (read_committed, no consumer group)
 * once, from `start` to `end`, calling `visit` for each, in offset order
 * within a partition. Memory stays bounded: each record is let go after `visit`.
 */
export async function readTopic(kafka: Kafka, topic: string, visit: (record: KafkaRecord) => void, options: ReadTopicOptions = {}): Promise<void> {
  await lastValueFrom(
    fromKafka({ kafka, topics: [topic], bounded: options.end ?? true, start: options.start ?? 'earliest', ...(options.partitions ? { partitions: options.partitions } : {}) }).pipe(
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
