import { expect } from 'vitest';
import { spawnTs } from '../support/childProcess.js';
import { kafkaTest as test } from '../support/kafka.js';

const stopEarly = new URL('./fixtures/stopEarly.ts', import.meta.url);

// A source stopped while it connected, joined or prepared its lanes used to leave kafkajs clients connected after its
// shutdown (a client used after its disconnect connects again), and the process could not exit: a status reader
// started and stopped at once left 3 sockets. Each child subscribes, unsubscribes after the delay and must then exit by
// itself; one that still has a socket open after 10 s prints where it goes and exits 3.
test('a fromKafka source unsubscribed at any point of its start-up closes every client, so its process exits', async ({ kafka }) => {
  const topic = await kafka.createTopic({ partitions: 4 });
  await kafka.produce(topic, 1_000, (i) => ({ value: `r-${i}` }));
  const runs = [
    ...[0, 50, 150, 250, 350, 500, 800, 1_500].map((delayMs) => ({ group: '-', delayMs })),
    // Each member alone in its group: a member that leaves while others join waits for the group's rebalance.
    ...[0, 300, 1_500].map((delayMs) => ({ group: kafka.group('stop-early'), delayMs })),
  ];
  const children = runs.map(({ group, delayMs }) => ({ group, delayMs, child: spawnTs(stopEarly, [kafka.brokers.join(','), topic, group, String(delayMs), '10000'], { quiet: true }) }));
  const results = await Promise.all(children.map(async ({ group, delayMs, child }) => ({ group, delayMs, code: await child.exited, output: [...child.lines, ...child.errors].join('\n') })));
  expect(results.filter((result) => result.code !== 0)).toEqual([]);
}, 120_000);
