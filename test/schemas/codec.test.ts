import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  badRecordCodes,
  codecFor,
  codecForSchema,
  schemaOf,
  ConfigError,
  EncodeError,
  type AvroSchema,
  type Framing,
  type RecordName,
  type RecordTypes,
  type TrainingSample,
} from '../../schemas/index.js';
import { deadLetterArb, modelSnapshotArb, parameterUpdateArb, sample16, trainingSampleArb } from '../support/arbitraries.js';

const framings: Framing[] = ['raw', 'confluent'];
const origin = { topic: 'telemetry', partition: 3, offset: '1234' };

function roundTrips<N extends RecordName>(name: N, arb: fc.Arbitrary<RecordTypes[N]>, framing: Framing): void {
  const codec = codecFor(name, { framing, schemaId: 42 });
  fc.assert(
    fc.property(arb, (value) => {
      const decoded = codec.decode(codec.encode(value));
      expect(decoded.ok).toBe(true);
      if (decoded.ok) expect({ ...decoded.value }).toEqual(value);
    }),
    { numRuns: 300 },
  );
}

describe('codecs', () => {
  for (const framing of framings) {
    describe(`${framing} framing`, () => {
      it('round-trips every valid TrainingSample', () => roundTrips('TrainingSample', trainingSampleArb, framing));
      it('round-trips every valid ParameterUpdate', () => roundTrips('ParameterUpdate', parameterUpdateArb, framing));
      it('round-trips every valid ModelSnapshot', () => roundTrips('ModelSnapshot', modelSnapshotArb, framing));
      it('round-trips every valid DeadLetter', () => roundTrips('DeadLetter', deadLetterArb, framing));

      it('never throws on random bytes: each is a sample or a typed bad-record error', () => {
        const codecs = (['TrainingSample', 'ParameterUpdate', 'ModelSnapshot', 'DeadLetter'] as const).map((name) => codecFor(name, { framing, schemaId: 0 }));
        fc.assert(
          fc.property(fc.boolean(), fc.uint8Array({ maxLength: 200 }), (withHeader, array) => {
            // Random bytes rarely start with a valid Confluent header; give half of them one, so the Avro body is fuzzed too.
            const header = framing === 'confluent' && withHeader ? [0, 0, 0, 0, 0] : [];
            const bytes = Buffer.from([...header, ...array]);
            for (const codec of codecs) {
              const result = codec.decode(bytes, origin);
              if (!result.ok) {
                expect(Object.keys(badRecordCodes)).toContain(result.error.code);
                expect(result.error.retriable).toBe(false);
                expect(result.error.message).toContain('telemetry[3]@1234');
              }
            }
          }),
          { numRuns: 3000 },
        );
      });

      it('rejects every truncation of a valid record as DECODE', () => {
        const codec = codecFor('TrainingSample', { framing, schemaId: 1 });
        const full = codec.encode(sample16());
        for (let length = 1; length < full.length; length++) {
          const result = codec.decode(full.subarray(0, length), origin);
          expect(result.ok, `prefix of ${length} bytes`).toBe(false);
          if (!result.ok) expect(result.error.code).toBe('DECODE');
        }
      });

      it('rejects trailing bytes after a record', () => {
        const codec = codecFor('TrainingSample', { framing, schemaId: 1 });
        const result = codec.decode(Buffer.concat([codec.encode(sample16()), Buffer.from([0, 0])]), origin);
        expect(result.ok).toBe(false);
        if (!result.ok) expect(result.error.message).toMatch(/2 bytes left over/);
      });

      it('stops at a forged block count instead of allocating it', () => {
        const codec = codecFor('TrainingSample', { framing, schemaId: 1 });
        // deviceId "a", eventTime 1, then an array block that claims 2^31 - 1 floats.
        const body = Buffer.from([0x02, 0x61, 0x02, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0]);
        const bytes = framing === 'raw' ? body : Buffer.concat([Buffer.from([0, 0, 0, 0, 1]), body]);
        const started = performance.now();
        const result = codec.decode(bytes, origin);
        expect(performance.now() - started).toBeLessThan(1000);
        expect(result.ok).toBe(false);
        if (!result.ok) expect(result.error.message).toMatch(/claims 2147483647 items/);
      });

      it('rejects oversized and empty records before decoding', () => {
        const codec = codecFor('TrainingSample', { framing, schemaId: 1, maxRecordBytes: 64 });
        const big = codec.encode(sample16({ attributes: { note: 'x'.repeat(100) } }));
        const oversized = codec.decode(big, origin);
        expect(oversized.ok ? undefined : oversized.error.code).toBe('OVERSIZED');
        expect(oversized.ok ? '' : oversized.error.message).toContain(`${big.length} bytes exceeds the limit of 64`);
        const tombstone = codec.decode(null, origin);
        expect(tombstone.ok ? undefined : tombstone.error.code).toBe('EMPTY');
      });
    });
  }

  describe('confluent framing', () => {
    const codec = codecFor('TrainingSample', { framing: 'confluent', schemaId: 7 });

    it('writes magic byte 0 and the big-endian schema id in front of the Avro body', () => {
      const framed = codec.encode(sample16());
      const raw = codecFor('TrainingSample').encode(sample16());
      expect([...framed.subarray(0, 5)]).toEqual([0, 0, 0, 0, 7]);
      expect(framed.subarray(5).equals(raw)).toBe(true);
    });

    it('rejects a wrong magic byte', () => {
      const framed = codec.encode(sample16());
      framed[0] = 1;
      const result = codec.decode(framed, origin);
      expect(result.ok ? undefined : result.error.code).toBe('BAD_MAGIC_BYTE');
      expect(result.ok ? '' : result.error.message).toBe('bad magic byte at telemetry[3]@1234: expected the Confluent magic byte 0, got 0x01');
    });

    it('rejects an unknown schema id, naming it', () => {
      const other = codecFor('TrainingSample', { framing: 'confluent', schemaId: 99 }).encode(sample16());
      const result = codec.decode(other, origin);
      expect(result.ok ? undefined : result.error.code).toBe('UNKNOWN_SCHEMA_ID');
      expect(result.ok ? '' : result.error.message).toContain('writer schema id 99 is not known');
    });

    it('rejects a writer schema that cannot be resolved', () => {
      const incompatible = { type: 'record', name: 'TrainingSample', namespace: 'dev.streamgrad', fields: [{ name: 'deviceId', type: 'int' }] };
      const reader = codecFor('TrainingSample', { framing: 'confluent', schemaId: 7, writerSchemas: (id) => (id === 8 ? (incompatible as AvroSchema) : undefined) });
      const writer = codecForSchema<{ deviceId: number }>(incompatible as AvroSchema, { framing: 'confluent', schemaId: 8 });
      const result = reader.decode(writer.encode({ deviceId: 3 }), origin);
      expect(result.ok ? undefined : result.error.code).toBe('INCOMPATIBLE_SCHEMA');
    });
  });

  describe('schema evolution', () => {
    const v1 = schemaOf('TrainingSample') as { fields: object[] };
    const v2 = { ...v1, fields: [...v1.fields, { name: 'firmware', type: 'string', default: 'unknown' }] } as AvroSchema;
    const schemasById = (id: number): AvroSchema | undefined => ({ 1: v1 as AvroSchema, 2: v2 })[id];
    type SampleV2 = TrainingSample & { firmware: string };

    it('a v2 reader that adds a defaulted field reads v1 data, with the default', () => {
      const written = codecFor('TrainingSample', { framing: 'confluent', schemaId: 1 }).encode(sample16());
      const reader = codecForSchema<SampleV2>(v2, { framing: 'confluent', schemaId: 2, writerSchemas: schemasById });
      const result = reader.decode(written, origin);
      expect(result.ok).toBe(true);
      if (result.ok) expect({ ...result.value }).toEqual({ ...sample16(), firmware: 'unknown' });
    });

    it('the v1 reader reads v2 data, leaving the new field out', () => {
      const written = codecForSchema<SampleV2>(v2, { framing: 'confluent', schemaId: 2 }).encode({ ...sample16(), firmware: '2.1.0' });
      const reader = codecFor('TrainingSample', { framing: 'confluent', schemaId: 1, writerSchemas: schemasById });
      const result = reader.decode(written, origin);
      expect(result.ok).toBe(true);
      if (result.ok) expect({ ...result.value }).toEqual(sample16());
    });
  });

  describe('encoding', () => {
    it('names the field that does not fit the schema', () => {
      const codec = codecFor('TrainingSample');
      const bad = { ...sample16(), features: [1, 'two'] } as unknown as TrainingSample;
      expect(() => codec.encode(bad)).toThrow(EncodeError);
      expect(() => codec.encode(bad)).toThrow("cannot encode dev.streamgrad.TrainingSample: field 'features.1' has the invalid value \"two\"");
      const missing = { ...sample16(), deviceId: undefined } as unknown as TrainingSample;
      expect(() => codec.encode(missing)).toThrow("field 'deviceId' is missing");
    });

    it('refuses a long that avsc would corrupt, instead of writing another number', () => {
      const codec = codecFor('TrainingSample');
      expect(() => codec.encode(sample16({ eventTime: -(2 ** 52) - 1 }))).toThrow("field 'eventTime' has the invalid value -4503599627370497");
      const lowest = codec.decode(codec.encode(sample16({ eventTime: -(2 ** 52) })));
      expect(lowest.ok && lowest.value.eventTime).toBe(-(2 ** 52));
    });

    it('validates its options when built', () => {
      expect(() => codecFor('TrainingSample', { framing: 'confluent' })).toThrow(ConfigError);
      expect(() => codecFor('TrainingSample', { framing: 'confluent' })).toThrow(/schemaId/);
      expect(() => codecFor('TrainingSample', { framing: 'json' as Framing })).toThrow(/framing: must be 'raw' or 'confluent', got 'json'/);
      expect(() => codecFor('TrainingSample', { maxRecordBytes: 0 })).toThrow(/maxRecordBytes/);
    });
  });
});
