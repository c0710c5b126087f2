import { createRequire } from 'node:module';
import fc from 'fast-check';
import { Partitioners } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { cachedKeyPartitioner } from '../../pipeline/common/kafkaClient.js';

// kafkajs' encoding and record decoding, patched for speed (patches/kafkajs+2.2.4.patch): varints written in place,
// int32 varlongs without Long, records sized to fit, messages grouped per partition in place, CRC-32C by slicing; offsets and timestamps
// decoded with numbers where exact. Every test on the real broker goes through them; these pin each record's bytes to
// what kafkajs' decoder reads back, and the decoded offsets and timestamps to exact (BigInt) arithmetic.
const require = createRequire(import.meta.url);
interface EncoderInstance {
  readonly buffer: Buffer;
  writeVarLong(value: unknown): EncoderInstance;
  writeVarInt(value: number): EncoderInstance;
}
interface DecoderInstance {
  readVarLong(): { toString(): string };
  readVarInt(): number;
  readInt32(): number;
}
const Encoder = require('kafkajs/src/protocol/encoder.js') as { new (initialSize?: number): EncoderInstance; sizeOfVarLong(value: unknown): number };
const Decoder = require('kafkajs/src/protocol/decoder.js') as new (buffer: Buffer) => DecoderInstance;
const Long = require('kafkajs/src/utils/long.js') as { fromValue(value: number | string): { toString(): string } };
const Record = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (record: object) => EncoderInstance;
const decodeRecord = require('kafkajs/src/protocol/recordBatch/record/v0/decoder.js') as (decoder: DecoderInstance, context: object) => { key: Buffer | null; value: Buffer | null; headers: Record<string, Buffer | Buffer[]>; offset: string; timestamp: string };
const crc32C = require('kafkajs/src/protocol/recordBatch/crc32C/index.js') as (buffer: Buffer) => number;
const groupMessagesPerPartition = require('kafkajs/src/producer/groupMessagesPerPartition.js') as (args: object) => Record<string, Array<{ key: string; value: string }>>;

describe('kafkajs encoding (patched)', () => {
  it('writes every varlong as the Long path does, and reads it back', () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.maxSafeInteger(), fc.integer({ min: -200, max: 200 })), (value) => {
        const fast = new Encoder().writeVarLong(value).buffer;
        expect(fast).toEqual(new Encoder().writeVarLong(Long.fromValue(value)).buffer);
        expect(Encoder.sizeOfVarLong(value)).toBe(fast.length);
        expect(new Decoder(fast).readVarLong().toString()).toBe(String(value));
      }),
      { numRuns: 2_000 },
    );
  });

  it('encodes records that its decoder reads back: key, value, headers, offset and timestamp', () => {
    const bytes = fc.uint8Array({ maxLength: 1_500 }).map((array) => Buffer.from(array));
    fc.assert(
      fc.property(
        fc.record({
          key: fc.option(fc.oneof(fc.string(), bytes), { nil: null }),
          value: fc.option(bytes, { nil: null }),
          // Names kafkajs' decoder can hold: it collects headers in a plain object, where 'valueOf' is taken.
          headers: fc.dictionary(fc.string({ maxLength: 20 }).map((name) => `h-${name}`), fc.string()),
          offsetDelta: fc.integer({ min: 0, max: 100_000 }),
          // Small deltas take the number path; past 7 varint bytes (2^48), Long's.
          timestampDelta: fc.oneof(fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.bigInt({ min: 0n, max: 2n ** 60n }).map((n) => Long.fromValue(n.toString()))),
          // The batch's first offset and timestamp: past 2^53, the decoder must not round.
          firstOffset: fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 40n }), fc.bigInt({ min: 2n ** 53n - 200_000n, max: 2n ** 63n - 200_001n })),
          firstTimestamp: fc.oneof(fc.constant(1_700_000_000_000n), fc.bigInt({ min: 2n ** 53n - 10n, max: 2n ** 62n })),
        }),
        ({ firstOffset, firstTimestamp, ...record }) => {
          const encoded = Record(record).buffer;
          const decoder = new Decoder(encoded);
          const length = decoder.readVarInt();
          expect(length).toBe(encoded.length - Encoder.sizeOfVarLong(length));
          const decoded = decodeRecord(decoder, { firstOffset: firstOffset.toString(), firstTimestamp: firstTimestamp.toString(), magicByte: 2 });
          expect(decoded.key).toEqual(record.key === null ? null : Buffer.from(record.key));
          expect(decoded.value).toEqual(record.value);
          expect(Object.fromEntries(Object.entries(decoded.headers).map(([k, v]) => [k, v.toString()]))).toEqual(record.headers);
          expect(decoded.offset).toBe(String(firstOffset + BigInt(record.offsetDelta)));
          expect(decoded.timestamp).toBe(String(firstTimestamp + BigInt(record.timestampDelta.toString())));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('checksums record batches (CRC-32C, slicing by 8) as the bytewise definition does', () => {
    // The reflected Castagnoli polynomial, one bit at a time: the definition, independent of kafkajs' tables.
    const bytewise = (buffer: Buffer) => {
      let crc = ~0;
      for (const byte of buffer) {
        crc ^= byte;
        for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
      }
      return ~crc >>> 0;
    };
    expect(crc32C(Buffer.from('123456789'))).toBe(0xe3069283);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(7), (bytes, offset) => {
        // At every alignment: a record batch's body is a view into a larger buffer.
        const buffer = Buffer.concat([Buffer.alloc(offset), Buffer.from(bytes)]).subarray(offset);
        expect(crc32C(buffer)).toBe(bytewise(buffer));
      }),
      { numRuns: 1_000 },
    );
  });

  it('groups messages per partition in order, each once', () => {
    const partitionMetadata = [0, 1, 2, 3, 4].map((partitionId) => ({ partitionId, leader: 1 }));
    const messages = Array.from({ length: 5_000 }, (_, i) => ({ key: `device-${i % 37}`, value: String(i) }));
    const grouped = groupMessagesPerPartition({ topic: 't', partitionMetadata, messages, partitioner: Partitioners.DefaultPartitioner() });
    const numbers = (list: ReadonlyArray<{ value: string }>) => list.map((m) => Number(m.value));
    expect(numbers(Object.values(grouped).flat()).sort((a, b) => a - b)).toEqual(messages.map((_, i) => i));
    for (const list of Object.values(grouped)) expect(numbers(list)).toEqual(numbers(list).sort((a, b) => a - b));
  });
});

describe('cachedKeyPartitioner', () => {
  it('picks the partition kafkajs’ default partitioner picks, for every key and partition count, also after the count changes', () => {
    const cached = cachedKeyPartitioner();
    const plain = Partitioners.DefaultPartitioner();
    fc.assert(
      fc.property(fc.string(), fc.integer({ min: 1, max: 64 }), fc.constantFrom('a', 'b'), (key, partitions, topic) => {
        const args = { topic, partitionMetadata: Array.from({ length: partitions }, (_, partitionId) => ({ partitionId, leader: 1, replicas: [1], isr: [1], partitionErrorCode: 0 })), message: { key, value: null } };
        expect(cached(args)).toBe(plain(args));
        expect(cached(args)).toBe(plain(args));
      }),
      { numRuns: 3_000 },
    );
  });
});
