import { from, lastValueFrom, toArray } from 'rxjs';
import { describe, expect } from 'vitest';
import { toKafka, type Outputs } from '../../operators/index.js';
import { kafkaTest as test } from '../support/kafka.js';

describe('toKafka', () => {
  test('writes every output with an idempotent producer and emits each once acknowledged, in order', async ({ kafka }) => {
    const topic = await kafka.createTopic({ partitions: 3 });
    const outputs: Outputs[] = Array.from({ length: 5_000 }, (_, i) => ({
      messages: [{ topic, messages: [{ key: `k${i % 13}`, value: `v${i}` }] }],
      covers: [{ first: i, last: i }],
    }));
    const acknowledged = await lastValueFrom(from(outputs).pipe(toKafka({ kafka: kafka.kafka, lingerMs: 5 }), toArray()));
    expect(acknowledged).toEqual(outputs);
    const written = await kafka.readCommitted(topic);
    expect(written.sort()).toEqual(outputs.map((_, i) => `v${i}`).sort());
  });

  test('names a bad option', async () => {
    expect(() => toKafka({ lingerMs: 5 })).toThrow('toKafka.producer: give exactly one of producer or kafka');
  });
});
