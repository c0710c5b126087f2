import { describe, expect } from 'vitest';
import { kafkaTest } from '../support/kafka.js';

// kafkajs sleeps maxWaitTimeInMs when every assigned partition is paused; unpatched, a partition resumed meanwhile
// waited out the rest of that sleep. A worker pauses its lanes while its commits are under way and resumes them
// when one lands, so it sat idle for the rest of the sleep (patches/kafkajs+2.2.4.patch: a resume wakes it).
describe('kafkajs consumer with every partition paused (patched)', () => {
  kafkaTest('fetches again as soon as a partition is resumed, not after the rest of maxWaitTimeInMs', async ({ kafka }) => {
    const topic = await kafka.createTopic();
    await kafka.produce(topic, 2, (i) => ({ value: `v${i}` }));
    const maxWaitTimeInMs = 8_000;
    const consumer = await kafka.consumer({ maxWaitTimeInMs, maxBytesPerPartition: 64 });
    await consumer.subscribe({ topic, fromBeginning: true });
    let resumedAt = 0;
    const second = new Promise<number>((resolve) => {
      void consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset }) => {
          const message = batch.messages[0]!;
          resolveOffset(message.offset);
          if (message.offset === '1') return resolve(Date.now());
          // The first record: pause the only partition (the fetcher goes to sleep) and resume it a moment later.
          consumer.pause([{ topic }]);
          setTimeout(() => {
            resumedAt = Date.now();
            consumer.resume([{ topic }]);
          }, 300);
        },
      });
    });
    const deliveredAt = await second;
    // Unpatched it comes about maxWaitTimeInMs - 300 ms after the resume; patched, at the next fetch.
    expect(deliveredAt - resumedAt).toBeLessThan(2_000);
  }, 30_000);
});
