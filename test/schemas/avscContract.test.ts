import { readdirSync, readFileSync } from 'node:fs';
import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { codecFor, schemaFiles } from '../../schemas/index.js';
import { sample16 } from '../support/arbitraries.js';

// Plain avsc, not the project's codecs: the .avsc files alone are the contract.
const dir = new URL('../../schemas/', import.meta.url);
const read = (file: string) => JSON.parse(readFileSync(new URL(file, dir), 'utf8')) as avro.Schema & Record<string, unknown>;

interface FieldSchema {
  name: string;
  doc?: string;
  type: unknown;
}

describe('the schema files', () => {
  it('are all listed in dependency order', () => {
    const onDisk = readdirSync(dir).filter((f) => f.endsWith('.avsc')).sort();
    expect([...schemaFiles].sort()).toEqual(onDisk);
  });

  it('load with plain avsc, in that order, into one registry', () => {
    const registry = {};
    for (const file of schemaFiles) {
      expect(() => avro.Type.forSchema(read(file), { registry }), file).not.toThrow();
    }
    expect(Object.keys(registry)).toEqual(expect.arrayContaining([
      'dev.streamgrad.Tensor', 'dev.streamgrad.TensorEncoding', 'dev.streamgrad.OffsetRange', 'dev.streamgrad.PartitionOffset',
      'dev.streamgrad.TrainingSample', 'dev.streamgrad.ParameterUpdate', 'dev.streamgrad.ModelSnapshot', 'dev.streamgrad.DeadLetter',
    ]));
  });

  it('round-trip a sample through plain avsc, byte-compatible with the project codec', () => {
    const registry = {};
    let sampleType: avro.Type | undefined;
    for (const file of schemaFiles) {
      const type = avro.Type.forSchema(read(file), { registry });
      if (file === 'training-sample.avsc') sampleType = type;
    }
    const sample = sample16();
    const bytes = sampleType!.toBuffer(sample);
    expect({ ...sampleType!.fromBuffer(bytes) }).toEqual(sample);
    expect(bytes.equals(codecFor('TrainingSample').encode(sample))).toBe(true);
    const decoded = codecFor('TrainingSample').decode(bytes);
    expect(decoded.ok && { ...decoded.value }).toEqual(sample);
  });

  it('give every record a namespace and every field a doc string', () => {
    for (const file of schemaFiles) {
      const schema = read(file);
      expect(schema.namespace, file).toBe('dev.streamgrad');
      expect(typeof schema.doc, file).toBe('string');
      for (const field of schema.fields as FieldSchema[]) {
        expect(field.doc?.length ?? 0, `${file}: ${field.name}`).toBeGreaterThan(10);
      }
    }
  });
});
