import { createHash } from 'node:crypto';
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

/**
 * The most bytes of a record's key and value a dead letter carries: a rejected record of any size (up to the
 * broker's own limit) must still fit the dead-letter topic, so larger ones keep this prefix, their size and hash.
 */
export const deadLetterMaxBytes = 16 * 1024;

/**
 * Builds the `DeadLetter` for a record that failed with `error`: the original bytes (their first
 * {@link deadLetterMaxBytes} when larger, with the full size and SHA-256), the code and the message.
 */
export function deadLetterFor(record: SourceRecord, error: BadRecordError | StreamgradError | Error, deadLetteredAt = Date.now()): DeadLetter {
  const value = record.value;
  const truncated = value !== null && value.length > deadLetterMaxBytes;
  return {
    topic: record.topic,
    partition: record.partition,
    offset: Number(record.offset),
    key: record.key && record.key.length > deadLetterMaxBytes ? record.key.subarray(0, deadLetterMaxBytes) : record.key,
    value: truncated ? value.subarray(0, deadLetterMaxBytes) : value,
    recordTimestamp: Number(record.timestamp) || 0,
    errorCode: error instanceof StreamgradError ? error.code : 'INTERNAL',
    errorMessage: error.message,
    deadLetteredAt,
    valueSize: value === null ? -1 : value.length,
    valueTruncated: truncated,
    valueSha256: value === null ? '' : createHash('sha256').update(value).digest('hex'),
  };
}
