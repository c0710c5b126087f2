import type { Producer, Transaction } from 'kafkajs';
import { lastValueFrom, Subject, toArray } from 'rxjs';
import { describe, expect } from 'vitest';
import { checkpoint, Lane, type KafkaRecord, type Outputs } from '../../operators/index.js';
import { LaneProducers } from '../../operators/laneProducers.js';
import { openSockets } from '../../pipeline/cli/service.js';
import { createKafka } from '../../pipeline/common/kafkaClient.js';
import { createLogger } from '../../pipeline/common/log.js';
import { kafkaTest as test, testBrokers } from '../support/kafka.js';

/**
 * A rebalance takes a lane away while its checkpoint's transaction is under way: fromKafka closes the lane's producer
 * (and, in the second case, the partition's next owner fences it) before the checkpoint's next request. A kafkajs
 * client used after its disconnect connects again, so the checkpoint's last requests (the offsets, the abort) must not
 * leave that client's socket open: it kept a worker from exiting for 5 s after `streamgrad run --workers 2`. Nor may
 * kafkajs' ERROR and WARN lines about it (an old epoch, an answer without its request) reach a user's log: the
 * checkpoint handles both, and the worker says what became of the lane.
 */
describe('checkpoint, a lane revoked mid-commit, on the real broker', () => {
  for (const fenced of [false, true]) {
    test(`leaves no socket of the lane's producer open${fenced ? ' when the next owner fenced it' : ''}`, async ({ kafka }) => {
      const topic = await kafka.createTopic({ partitions: 1 });
      const settings = { transactionalIdPrefix: `revoked-${topic}`, transactionTimeoutMs: 30_000 };
      const logged: string[] = [];
      let offsetsSent = 0;
      const client = createKafka({ brokers: testBrokers() }, 'revoked-mid-commit', createLogger({ format: 'json', level: 'info' }, (line) => logged.push(line)));
      const producers = new LaneProducers(client, settings, { retries: 3 });
      const nextOwner = new LaneProducers(client, settings, { retries: 3 });
      // The rebalance, between the transaction's messages and its offsets.
      const revokeBeforeOffsets = (producer: Producer): Producer => ({
        ...producer,
        transaction: async () => {
          const transaction = await producer.transaction();
          return {
            ...transaction,
            sendOffsets: async (offsets) => {
              offsetsSent += 1;
              lane.revoke('a rebalance (test)');
              await producers.close(lane);
              if (fenced) await nextOwner.open(lane);
              return transaction.sendOffsets(offsets);
            },
          } satisfies Transaction;
        },
      });
      // One wrapper per producer: the checkpoint tells a closed producer by its identity, as fromKafka hands it out.
      const wrapped = new WeakMap<Producer, Producer>();
      const control = {
        pause: () => {},
        resume: () => {},
        commitOffset: async () => {},
        recover: async () => undefined,
        producer: () => {
          const producer = producers.get(lane);
          if (producer && !wrapped.has(producer)) wrapped.set(producer, revokeBeforeOffsets(producer));
          return producer && wrapped.get(producer);
        },
      };
      const lane: Lane = new Lane(topic, 0, `group-${topic}`, 100, control);
      lane.startAt(0);
      const before = new Set(openSockets());
      await producers.open(lane);

      const record = (offset: number): KafkaRecord => ({ topic, partition: 0, offset: String(offset), key: null, value: null, timestamp: '0', headers: {} });
      [0, 1].forEach((offset) => lane.offer(record(offset)));
      const outputs = new Subject<Outputs>();
      const reports = lastValueFrom(outputs.pipe(checkpoint({ lane, intervalMs: 10_000 }), toArray()));
      outputs.next({ messages: [{ topic, messages: [{ value: 'x' }] }], covers: [{ first: 0, last: 1 }] });
      outputs.complete();
      expect(await reports).toEqual([]);
      expect(offsetsSent).toBe(1);
      await nextOwner.close(lane);

      // kafkajs closes a socket a tick after its disconnect resolves.
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(openSockets().filter((socket) => !before.has(socket))).toEqual([]);
      expect(await kafka.readCommittedValues(topic)).toEqual([]);
      expect(logged).toEqual([]);
    });
  }
});
