import { describe, expect, it } from 'vitest';
import { codecFor, deadLetterFor, SampleDecoder } from '../../schemas/index.js';

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
    });
    const codec = codecFor('DeadLetter');
    const decoded = codec.decode(codec.encode(letter));
    expect(decoded.ok && { ...decoded.value }).toEqual(letter);
  });

  it('codes an unexpected error as INTERNAL', () => {
    const record = { topic: 't', partition: 0, offset: '1', key: null, value: null, timestamp: '0' };
    expect(deadLetterFor(record, new TypeError('boom'), 5)).toMatchObject({ errorCode: 'INTERNAL', errorMessage: 'boom', value: null });
  });
});
