import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BadRecordError, codecFor, deadLetterFor, deadLetterMaxBytes, SampleDecoder } from '../../schemas/index.js';

describe('deadLetterFor', () => {
  it('keeps the original bytes, the place and the typed reason, and encodes as a DeadLetter', () => {
    const value = Buffer.from([0x07, 0x01, 0x02]);
    const record = { topic: 'telemetry', partition: 2, offset: '981', key: Buffer.from('device-3'), value, timestamp: '1790000000123' };
    const failed = new SampleDecoder({ featureCount: 16, framing: 'confluent', schemaId: 1 }).decode(value, record);
    expect(failed.ok).toBe(false);
    if (failed.ok) return;

    const letter = deadLetterFor(record, failed.error, 1_790_000_000_999);
    expect(letter).toEqual({
      topic: 'telemetry',
      partition: 2,
      offset: 981,
      key: Buffer.from('device-3'),
      value,
      recordTimestamp: 1_790_000_000_123,
      errorCode: 'BAD_MAGIC_BYTE',
      errorMessage: 'bad magic byte at telemetry[2]@981: expected the Confluent magic byte 0, got 0x07',
      deadLetteredAt: 1_790_000_000_999,
      valueSize: 3,
      valueTruncated: false,
      valueSha256: createHash('sha256').update(value).digest('hex'),
    });
    const codec = codecFor('DeadLetter');
    const decoded = codec.decode(codec.encode(letter));
    expect(decoded.ok && { ...decoded.value }).toEqual(letter);
  });

  it('codes an unexpected error as INTERNAL', () => {
    const record = { topic: 't', partition: 0, offset: '1', key: null, value: null, timestamp: '0' };
    expect(deadLetterFor(record, new TypeError('boom'), 5)).toMatchObject({ errorCode: 'INTERNAL', errorMessage: 'boom', value: null });
  });

  it('carries a prefix, the size and the SHA-256 of a record too large for the dead-letter topic (2 MiB)', () => {
    const value = Buffer.alloc(2 * 1024 * 1024, 7);
    const key = Buffer.alloc(100_000, 1);
    const record = { topic: 't', partition: 0, offset: '9', key, value, timestamp: '0' };
    const letter = deadLetterFor(record, new BadRecordError('OVERSIZED', record, 'too big'), 5);
    expect(letter.value?.length).toBe(deadLetterMaxBytes);
    expect(letter.key?.length).toBe(deadLetterMaxBytes);
    expect(letter).toMatchObject({ valueSize: 2 * 1024 * 1024, valueTruncated: true, valueSha256: createHash('sha256').update(value).digest('hex') });
    expect(codecFor('DeadLetter').encode(letter).length).toBeLessThan(2 * deadLetterMaxBytes + 1024);
  });
});
