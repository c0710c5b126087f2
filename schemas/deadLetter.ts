import { StreamgradError, type BadRecordError } from './errors.js';
import type { DeadLetter } from './types.js';

/** A Kafka record as kafkajs hands it over: offsets and timestamps are decimal strings. */
export interface SourceRecord {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  /** ms since the epoch, as a decimal string */
  readonly timestamp: string;
}

/** Builds the `DeadLetter` for a record that failed with `error`: the original bytes, the code and the message. */
export function deadLetterFor(record: SourceRecord, error: BadRecordError | StreamgradError | Error, deadLetteredAt = Date.now()): DeadLetter {
  return {
    topic: record.topic,
    partition: record.partition,
    offset: Number(record.offset),
    key: record.key,
    value: record.value,
    recordTimestamp: Number(record.timestamp) || 0,
    errorCode: error instanceof StreamgradError ? error.code : 'INTERNAL',
    errorMessage: error.message,
    deadLetteredAt,
  };
}
