import { describe, expect, it } from 'vitest';
import { codecFor, ConfigError, SampleDecoder, type BadRecordCode, type TrainingSample } from '../../schemas/index.js';
import { sample16 } from '../support/arbitraries.js';

const origin = { topic: 'telemetry', partition: 0, offset: '77' };
const encoder = codecFor('TrainingSample', { framing: 'confluent', schemaId: 5 });
const samples = new SampleDecoder({ featureCount: 16, framing: 'confluent', schemaId: 5 });

function codeOf(sample: TrainingSample): BadRecordCode | 'OK' {
  const result = samples.decode(encoder.encode(sample), origin);
  return result.ok ? 'OK' : result.error.code;
}

describe('SampleDecoder', () => {
  it('passes a valid sample through unchanged', () => {
    const result = samples.decode(encoder.encode(sample16()), origin);
    expect(result.ok && { ...result.value }).toEqual(sample16());
  });

  it.each([
    ['a NaN feature', sample16({ features: [...sample16().features.slice(0, 15), Number.NaN] }), 'NON_FINITE'],
    ['a +Inf feature', sample16({ features: [Number.POSITIVE_INFINITY, ...sample16().features.slice(1)] }), 'NON_FINITE'],
    ['a -Inf feature', sample16({ features: [Number.NEGATIVE_INFINITY, ...sample16().features.slice(1)] }), 'NON_FINITE'],
    ['a NaN label', sample16({ label: Number.NaN }), 'NON_FINITE'],
    ['an infinite weight', sample16({ weight: Number.POSITIVE_INFINITY }), 'NON_FINITE'],
    ['a negative weight', sample16({ weight: -1 }), 'WEIGHT'],
    ['15 features', sample16({ features: sample16().features.slice(1) }), 'FEATURE_COUNT'],
    ['17 features', sample16({ features: [...sample16().features, 0] }), 'FEATURE_COUNT'],
    ['no label', sample16({ label: null }), 'LABEL'],
  ] as const)('routes %s to the dead letters as %s', (_, sample, code) => {
    expect(codeOf(sample)).toBe(code);
  });

  it('says where the record is and what is wrong with it', () => {
    const result = samples.decode(encoder.encode(sample16({ features: [...sample16().features.slice(0, 15), Number.NaN] })), origin);
    expect(result.ok ? '' : result.error.message).toBe("non-finite number at telemetry[0]@77: features[15] of device 'device-7' is NaN");
  });

  it('accepts a single label in labels, and checks multi-output label counts', () => {
    expect(codeOf(sample16({ label: null, labels: [1] }))).toBe('OK');
    const threeClasses = new SampleDecoder({ featureCount: 16, labelCount: 3 });
    const raw = codecFor('TrainingSample');
    const three = threeClasses.decode(raw.encode(sample16({ label: null, labels: [0, 1, 0] })));
    const two = threeClasses.decode(raw.encode(sample16({ label: null, labels: [0, 1] })));
    expect(three.ok).toBe(true);
    expect(two.ok ? undefined : two.error.code).toBe('LABEL');
    const unlabelled = new SampleDecoder({ featureCount: 16, labelCount: 0 }).decode(raw.encode(sample16({ label: null })));
    expect(unlabelled.ok).toBe(true);
  });

  it('takes a class index as label for a model with several outputs: a whole number below the class count', () => {
    const fiveClasses = new SampleDecoder({ featureCount: 16, labelCount: 5 });
    const raw = codecFor('TrainingSample');
    const codeFor = (label: number) => {
      const result = fiveClasses.decode(raw.encode(sample16({ label, labels: [] })));
      return result.ok ? 'OK' : result.error.code;
    };
    expect([0, 4, 5, -1, 2.5].map(codeFor)).toEqual(['OK', 'OK', 'LABEL', 'LABEL', 'LABEL']);
    const wrong = fiveClasses.decode(raw.encode(sample16({ label: 7, labels: [] })));
    expect(wrong.ok ? '' : wrong.error.message).toMatch(/needs 5 labels, or a class index from 0 to 4 as label/);
  });

  it('decodes bad bytes to typed errors, never a throw', () => {
    expect(samples.decode(Buffer.from('not avro at all'), origin)).toMatchObject({ ok: false, error: { code: 'BAD_MAGIC_BYTE' } });
    expect(samples.decode(Buffer.from([0, 0, 0, 0, 5, 0xff, 0xff]), origin)).toMatchObject({ ok: false, error: { code: 'DECODE' } });
    expect(samples.decode(undefined, origin)).toMatchObject({ ok: false, error: { code: 'EMPTY' } });
  });

  it('validates its limits when built', () => {
    expect(() => new SampleDecoder({ featureCount: 0 })).toThrow(ConfigError);
    expect(() => new SampleDecoder({ featureCount: 0 })).toThrow('invalid configuration: featureCount: must be a positive whole number, got 0');
    expect(() => new SampleDecoder({ featureCount: 4, labelCount: -1 })).toThrow(/labelCount/);
  });
});
