import { describe, expect } from 'vitest';
import { kafkaTest as test } from '../support/kafka.js';

describe('the test broker', () => {
  test('delivers 100,000 messages over 6 partitions to one group exactly once, by content', async ({ kafka }) => {
    const total = 100_000;
    const topic = await kafka.createTopic({ partitions: 6 });

    const producer = await kafka.producer({ allowAutoTopicCreation: false });
    const perRequest = 5_000;
    for (let start = 0; start < total; start += perRequest) {
      const messages = Array.from({ length: perRequest }, (_, i) => ({ key: String((start + i) % 97), value: `m-${start + i}` }));
      await producer.send({ topic, acks: -1, messages });
    }

    const seen = new Map<string, number>();
    let received = 0;
    const consumer = await kafka.consumer();
    await consumer.subscribe({ topic, fromBeginning: true });
    const allReceived = new Promise<void>((resolve) => {
      void consumer.run({
        eachBatch: async ({ batch }) => {
          for (const message of batch.messages) {
            const value = message.value?.toString() ?? '';
            seen.set(value, (seen.get(value) ?? 0) + 1);
            received += 1;
          }
          if (received >= total) resolve();
        },
      });
    });
    await allReceived;

    const admin = kafka.admin;
    const endOffsets = await admin.fetchTopicOffsets(topic);
    expect(endOffsets).toHaveLength(6);
    expect(endOffsets.reduce((sum, p) => sum + Number(p.high), 0)).toBe(total);
    // Every partition got some of the keys: the group really read all six.
    expect(endOffsets.every((p) => Number(p.high) > 0)).toBe(true);
    expect(received).toBe(total);
    expect(seen.size).toBe(total);
    const duplicates = [...seen].filter(([, count]) => count !== 1);
    expect(duplicates).toEqual([]);
    for (let i = 0; i < total; i += 9_973) expect(seen.has(`m-${i}`)).toBe(true);
  });

  test('a read_committed consumer sees committed transactions only', async ({ kafka }) => {
    const partitions = 3;
    const topic = await kafka.createTopic({ partitions });
    const producer = await kafka.producer({
      transactionalId: `tx-${topic}`,
      idempotent: true,
      maxInFlightRequests: 1,
    });

    const committed = new Set<string>();
    const aborted = new Set<string>();
    for (let batch = 0; batch < 10; batch++) {
      const values = Array.from({ length: 50 }, (_, i) => `b${batch}-${i}`);
      const transaction = await producer.transaction();
      await transaction.send({ topic, messages: values.map((value, i) => ({ partition: i % partitions, value })) });
      if (batch % 3 === 1) {
        await transaction.abort();
        values.forEach((v) => aborted.add(v));
      } else {
        await transaction.commit();
        values.forEach((v) => committed.add(v));
      }
    }
    // One committed end marker per partition: once all have arrived, every earlier committed message has too.
    const sentinels = Array.from({ length: partitions }, (_, partition) => `end-${partition}`);
    const last = await producer.transaction();
    await last.send({ topic, messages: sentinels.map((value, partition) => ({ partition, value })) });
    await last.commit();

    async function readAll(readUncommitted: boolean): Promise<string[]> {
      const values: string[] = [];
      const consumer = await kafka.consumer({ readUncommitted });
      await consumer.subscribe({ topic, fromBeginning: true });
      await new Promise<void>((resolve) => {
        let ended = 0;
        void consumer.run({
          eachMessage: async ({ message }) => {
            const value = message.value?.toString() ?? '';
            if (value.startsWith('end-')) {
              if (++ended === partitions) resolve();
            } else {
              values.push(value);
            }
          },
        });
      });
      await consumer.disconnect();
      return values;
    }

    const readCommitted = await readAll(false);
    expect(readCommitted).toHaveLength(committed.size);
    expect(new Set(readCommitted)).toEqual(committed);
    expect(readCommitted.filter((v) => aborted.has(v))).toEqual([]);

    // The control: the aborted records are really in the log, and only isolation hides them.
    const readUncommitted = await readAll(true);
    expect(new Set(readUncommitted)).toEqual(new Set([...committed, ...aborted]));
  });
});

describe('kafkajs read_committed filtering (patched in patches/kafkajs+2.2.4.patch)', () => {
  test('a fetch that starts inside two aborted transactions skips both', async ({ kafka }) => {
    const topic = await kafka.createTopic({ partitions: 1 });
    const first = await kafka.producer({ transactionalId: `tx-a-${topic}`, idempotent: true, maxInFlightRequests: 1 });
    const second = await kafka.producer({ transactionalId: `tx-b-${topic}`, idempotent: true, maxInFlightRequests: 1 });
    const a = await first.transaction();
    const b = await second.transaction();
    // Offsets: a1 0, b1 1, a2 2, b2 3, then the two abort markers, then a committed record.
    await a.send({ topic, messages: [{ value: 'a1' }] });
    await b.send({ topic, messages: [{ value: 'b1' }] });
    await a.send({ topic, messages: [{ value: 'a2' }] });
    await b.send({ topic, messages: [{ value: 'b2' }] });
    await a.abort();
    await b.abort();
    const committed = await first.transaction();
    await committed.send({ topic, messages: [{ value: 'kept' }] });
    await committed.commit();

    // Start at b2: both aborted transactions began before it, the second one's record comes first.
    const consumer = await kafka.consumer({ readUncommitted: false });
    await consumer.subscribe({ topic });
    const seen: string[] = [];
    await new Promise<void>((resolve) => {
      void consumer.run({
        eachMessage: async ({ message }) => {
          seen.push(message.value?.toString() ?? '');
          if (seen.includes('kept')) resolve();
        },
      });
      consumer.seek({ topic, partition: 0, offset: '3' });
    });
    expect(seen).toEqual(['kept']);
  });
});
