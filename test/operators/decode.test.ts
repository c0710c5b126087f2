import { createHash } from 'node:crypto';
import { Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { decode, deadLetter, type KafkaRecord, type Rejected } from '../../operators/index.js';
import { codecFor, SampleDecoder } from '../../schemas/index.js';
import { sample16 } from '../support/arbitraries.js';
import { marbleScheduler as scheduler } from '../support/marbles.js';

const samples = new SampleDecoder({ featureCount: 16 });
const raw = codecFor('TrainingSample');
const recordAt = (offset: number, value: Buffer | null): KafkaRecord => ({ topic: 'telemetry', partition: 1, offset: String(offset), key: Buffer.from('d'), value, timestamp: '1790000000000', headers: {} });
const good = recordAt(0, raw.encode(sample16()));
const bad = recordAt(1, Buffer.from('garbage'));
const nan = recordAt(2, raw.encode(sample16({ weight: Number.NaN })));

describe('decode', () => {
  it('passes decoded samples on and sends bad records to the side output, never stopping the lane', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const rejected = new Subject<Rejected>();
      const source = cold('a-b-c-d|', { a: good, b: bad, c: nan, d: good });
      expectObservable(source.pipe(decode(samples, rejected))).toBe('a-----d|', { a: { value: sample16(), record: good }, d: { value: sample16(), record: good } });
    });
  });

  it('records each rejection with its typed code', () => {
    const rejected = new Subject<Rejected>();
    const codes: string[] = [];
    rejected.subscribe(({ error, record }) => codes.push(`${record.offset}:${error.code}`));
    const values: unknown[] = [];
    const input = new Subject<KafkaRecord>();
    input.pipe(decode(samples, rejected)).subscribe((v) => values.push(v));
    [good, bad, nan, recordAt(3, null)].forEach((r) => input.next(r));
    expect(codes).toEqual(['1:DECODE', '2:NON_FINITE', '3:EMPTY']);
    expect(values).toHaveLength(1);
  });

  it('handles the empty source, the source error, a throwing decoder and early unsubscribe', () => {
    scheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
      const rejected = new Subject<Rejected>();
      expectObservable(cold<KafkaRecord>('|').pipe(decode(samples, rejected))).toBe('|');
      expectObservable(cold<KafkaRecord>('#').pipe(decode(samples, rejected))).toBe('#');
      const throwing = {
        decode: () => {
          throw new Error('decoder bug');
        },
      };
      expectObservable(cold('a|', { a: good }).pipe(decode(throwing, rejected))).toBe('#', undefined, new Error('decoder bug'));
      const source = cold('a-a-a|', { a: good });
      expectObservable(source.pipe(decode(samples, rejected)), '^-!').toBe('a', { a: { value: sample16(), record: good } });
      expectSubscriptions(source.subscriptions).toBe('^-!');
    });
  });
});

describe('deadLetter', () => {
  it('writes a DeadLetter, keyed like the source, that accounts for the rejected offset', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const error = samples.decode(bad.value, bad);
      if (error.ok) throw new Error('expected a failure');
      const outputs = cold('r|', { r: { record: bad, error: error.error } }).pipe(deadLetter({ topic: 'ns.dlq', now: () => 42 }));
      const letter = codecFor('DeadLetter').encode({
        topic: 'telemetry', partition: 1, offset: 1, key: Buffer.from('d'), value: bad.value, recordTimestamp: 1_790_000_000_000,
        errorCode: 'DECODE', errorMessage: error.error.message, deadLetteredAt: 42,
        valueSize: bad.value!.length, valueTruncated: false, valueSha256: createHash('sha256').update(bad.value!).digest('hex'),
      });
      expectObservable(outputs).toBe('o|', { o: { messages: [{ topic: 'ns.dlq', messages: [{ key: Buffer.from('d'), value: letter }] }], covers: [{ first: 1, last: 1 }] } });
    });
  });
});
