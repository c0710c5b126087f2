import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { codecFor, codecForSchema, SampleColumns, SampleDecoder, schemaOf, type AvroSchema, type TrainingSample } from '../../schemas/index.js';
import { sample16 } from '../support/arbitraries.js';

const origin = { topic: 'telemetry', partition: 2, offset: '41' };

/** Every column of row `row`, element by element (Object.is: -0 and 0 differ). */
function rowOf(columns: SampleColumns, row: number): number[] {
  const { featureCount: f, targetCount: t } = columns;
  return [...columns.features.subarray(row * f, (row + 1) * f), ...columns.targets.subarray(row * t, (row + 1) * t), columns.weights[row]!, columns.eventTimes[row]!];
}

/**
 * What `decodeInto` must give: the schema-driven decode and checks, then the sample pushed as a row. The columns
 * are pre-filled with garbage, so a row written only in part shows.
 */
function expectSameAsReference(decoder: SampleDecoder, bytes: Buffer): void {
  const fresh = () => {
    const columns = new SampleColumns(2, decoder.featureCount, decoder.labelCount);
    for (const column of [columns.features, columns.targets, columns.weights, columns.eventTimes]) column.fill(7.25);
    return columns;
  };
  const lean = fresh();
  const error = decoder.decodeInto(bytes, lean, origin);
  const reference = fresh();
  const decoded = decoder.decode(bytes, origin);
  if (decoded.ok) reference.push(decoded.value);
  expect(error?.code).toBe(decoded.ok ? undefined : decoded.error.code);
  expect(error?.message).toBe(decoded.ok ? undefined : decoded.error.message);
  expect(lean.length).toBe(reference.length);
  if (reference.length === 1) expect(rowOf(lean, 0).map(String)).toEqual(rowOf(reference, 0).map(String));
  expect(rowOf(lean, 1)).toEqual(rowOf(reference, 1)); // nothing written past its row
}

/** Floats as a sensor sends them, now and then not finite, and a negative zero. */
const reading = fc.oneof({ weight: 12, arbitrary: fc.float({ min: -1e6, max: 1e6, noNaN: true }).map(Math.fround) }, fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 0));

/** Samples near a model of `features` inputs and `outputs` outputs: mostly valid, and every way of not being so. */
function nearbySample(features: number, outputs: number): fc.Arbitrary<TrainingSample> {
  return fc.record({
    deviceId: fc.string({ maxLength: 12 }),
    eventTime: fc.oneof(fc.integer({ min: 1_600_000_000_000, max: 2_000_000_000_000 }), fc.integer({ min: -(2 ** 52), max: 2 ** 53 - 2 })),
    features: fc.oneof({ weight: 8, arbitrary: fc.array(reading, { minLength: features, maxLength: features }) }, fc.array(reading, { maxLength: features + 2 })),
    label: fc.option(fc.oneof(reading, fc.integer({ min: -1, max: outputs + 1 })), { nil: null }),
    labels: fc.oneof(fc.constant<number[]>([]), fc.array(reading, { minLength: outputs, maxLength: outputs }), fc.array(reading, { maxLength: outputs + 2 })),
    weight: fc.oneof({ weight: 4, arbitrary: fc.constant(1) }, reading),
    attributes: fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }),
  });
}

const shapes = [
  { features: 3, outputs: 1 },
  { features: 16, outputs: 1 },
  { features: 4, outputs: 5 },
  { features: 2, outputs: 0 },
];

describe('SampleDecoder.decodeInto (the columnar input path)', () => {
  it.each(shapes)('agrees with decode and checks on every sample near a model of $features features and $outputs outputs, raw and framed', ({ features, outputs }) => {
    const raw = { decoder: new SampleDecoder({ featureCount: features, labelCount: outputs }), codec: codecFor('TrainingSample') };
    const framed = { decoder: new SampleDecoder({ featureCount: features, labelCount: outputs, framing: 'confluent', schemaId: 9 }), codec: codecFor('TrainingSample', { framing: 'confluent', schemaId: 9 }) };
    fc.assert(
      fc.property(nearbySample(features, outputs), (sample) => {
        for (const { decoder, codec } of [raw, framed]) expectSameAsReference(decoder, codec.encode(sample));
      }),
      { numRuns: 400 },
    );
  });

  it('agrees with decode on damaged bytes: cut short, bytes changed, bytes appended', () => {
    const decoder = new SampleDecoder({ featureCount: 16, framing: 'confluent', schemaId: 9 });
    const codec = codecFor('TrainingSample', { framing: 'confluent', schemaId: 9 });
    const damage = fc.oneof(
      fc.nat().map((n) => (b: Buffer) => b.subarray(0, n % b.length)),
      fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([at, byte]) => (b: Buffer) => {
        const copy = Buffer.from(b);
        copy[at % copy.length] = byte;
        return copy;
      }),
      fc.uint8Array({ minLength: 1, maxLength: 5 }).map((extra) => (b: Buffer) => Buffer.concat([b, Buffer.from(extra)])),
    );
    fc.assert(fc.property(nearbySample(16, 1), fc.array(damage, { minLength: 1, maxLength: 3 }), (sample, damages) => expectSameAsReference(decoder, damages.reduce((bytes, hurt) => hurt(bytes), codec.encode(sample)))), { numRuns: 1_000 });
  });

  it('reads valid samples without the schema-driven decoder, in either framing', () => {
    for (const options of [{}, { framing: 'confluent' as const, schemaId: 3 }]) {
      const decoder = new SampleDecoder({ featureCount: 16, ...options });
      const codec = codecFor('TrainingSample', options);
      const slow = vi.spyOn(decoder, 'decode');
      const columns = new SampleColumns(3, 16, 1);
      for (const sample of [sample16(), sample16({ label: null, labels: [0.25] }), sample16({ attributes: {}, weight: 0 })]) expect(decoder.decodeInto(codec.encode(sample), columns, origin)).toBeUndefined();
      expect(slow).not.toHaveBeenCalled();
      expect(columns.batch()).toMatchObject({ length: 3, featureCount: 16, targetCount: 1 });
      expect([...columns.targets]).toEqual([0.5, 0.25, 0.5]);
      expect([...columns.weights]).toEqual([1, 1, 0]);
    }
  });

  it('reads a block of more floats than it copies at once (1,500 features), one by one, with the same result', () => {
    const decoder = new SampleDecoder({ featureCount: 1_500 });
    const codec = codecFor('TrainingSample');
    const features = Array.from({ length: 1_500 }, (_, i) => Math.fround(Math.sin(i) * 100));
    const slow = vi.spyOn(decoder, 'decode');
    const columns = new SampleColumns(1, 1_500, 1);
    expect(decoder.decodeInto(codec.encode(sample16({ features })), columns, origin)).toBeUndefined();
    expect(slow).not.toHaveBeenCalled();
    expect([...columns.features]).toEqual(features);
    slow.mockRestore();
    expectSameAsReference(decoder, codec.encode(sample16({ features: features.map((v, i) => (i === 1_400 ? Number.NaN : v)) })));
  });

  it('reads arrays and maps written in several blocks, with and without their byte sizes', () => {
    // The Avro encoding by hand: avsc writes each array in one block, other writers may not.
    const long = (n: number) => {
      const out: number[] = [];
      let z = n >= 0 ? n * 2 : -n * 2 - 1;
      while (z >= 128) {
        out.push((z % 128) | 128);
        z = Math.floor(z / 128);
      }
      out.push(z);
      return Buffer.from(out);
    };
    const floats = (values: number[]) => Buffer.concat(values.map((v) => Buffer.from(new Float32Array([v]).buffer)));
    const string = (s: string) => Buffer.concat([long(Buffer.byteLength(s)), Buffer.from(s)]);
    const bytes = Buffer.concat([
      string('device-9'),
      long(1_790_000_000_123),
      long(2), floats([1, 2]), long(-1), long(4), floats([3]), long(0), // features: a block of 2, a sized block of 1
      long(1), floats([0.75]), // label
      long(0), // labels
      floats([2]), // weight
      long(-1), long(6), string('a'), string('bc'), long(1), string('d'), string(''), long(0), // attributes in 2 blocks
    ]);
    const decoder = new SampleDecoder({ featureCount: 3 });
    const slow = vi.spyOn(decoder, 'decode');
    const columns = new SampleColumns(1, 3, 1);
    expect(decoder.decodeInto(bytes, columns, origin)).toBeUndefined();
    expect(slow).not.toHaveBeenCalled();
    expect(rowOf(columns, 0)).toEqual([1, 2, 3, 0.75, 2, 1_790_000_000_123]);
    slow.mockRestore();
    expectSameAsReference(decoder, bytes);
  });

  it('leaves records written with another schema version to the schema-driven decoder, which resolves them', () => {
    const current = schemaOf('TrainingSample') as { fields: Array<{ name: string }> };
    const older = { ...current, fields: current.fields.filter((field) => field.name !== 'attributes' && field.name !== 'weight') };
    const writer = codecForSchema<Omit<TrainingSample, 'weight' | 'attributes'>>(older as AvroSchema, { framing: 'confluent', schemaId: 4 });
    const decoder = new SampleDecoder({ featureCount: 16, framing: 'confluent', schemaId: 5, writerSchemas: (id) => (id === 4 ? (older as AvroSchema) : undefined) });
    const slow = vi.spyOn(decoder, 'decode');
    const { weight: _weight, attributes: _attributes, ...sample } = sample16();
    const columns = new SampleColumns(1, 16, 1);
    expect(decoder.decodeInto(writer.encode(sample), columns, origin)).toBeUndefined();
    expect(slow).toHaveBeenCalledTimes(1);
    expect(rowOf(columns, 0)).toEqual([...sample.features, 0.5, 1, sample.eventTime]); // weight: the schema's default
  });

  it('refuses columns of another shape, and a full batch', () => {
    const decoder = new SampleDecoder({ featureCount: 16 });
    const codec = codecFor('TrainingSample');
    expect(() => decoder.decodeInto(codec.encode(sample16()), new SampleColumns(1, 15, 1), origin)).toThrow(/columns of 15 features and 1 targets, for a decoder of 16 and 1/);
    const full = new SampleColumns(1, 16, 1);
    decoder.decodeInto(codec.encode(sample16()), full, origin);
    expect(() => decoder.decodeInto(codec.encode(sample16()), full, origin)).toThrow(/the batch is full: it holds 1 samples/);
  });
});
