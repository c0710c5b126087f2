import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { kafkaTest } from '../support/kafka.js';

// kafkajs' producer retries, patched (patches/kafkajs+2.2.4.patch). The proof on real brokers is the 3-broker outage
// test, where the unpatched retries appended the same updates twice in one transaction; this pins the rule down.
const require = createRequire(import.meta.url);
type Produce = (request: { topicData: Array<{ topic: string; partitions: Array<{ partition: number; firstSequence: number; messages: unknown[] }> }> }) => Promise<unknown>;
const sendMessages = require('kafkajs/src/producer/sendMessages.js') as (deps: object) => (request: object) => Promise<unknown[]>;
const createRetry = require('kafkajs/src/retry/index.js') as (options: object) => unknown;
const { KafkaJSProtocolError } = require('kafkajs/src/errors.js') as { KafkaJSProtocolError: new (error: object) => Error };

describe('kafkajs sendMessages (patched)', () => {
  it('sends each partition once when its leader moves between retries: none twice, none left out', async () => {
    // p0 on broker 1, p1 on broker 2; broker 1's first answer is "not the leader": the two partitions swap leaders.
    let leaders: Record<number, number> = { 0: 1, 1: 2 };
    const appended: string[] = [];
    const produce = (nodeId: number): Produce => async ({ topicData }) => {
      if (nodeId === 1 && leaders[0] === 1) {
        leaders = { 0: 2, 1: 1 };
        throw new KafkaJSProtocolError({ type: 'NOT_LEADER_FOR_PARTITION', code: 6, retriable: true, message: 'not the leader' });
      }
      for (const { partitions } of topicData) for (const { partition, firstSequence } of partitions) appended.push(`p${partition} seq ${firstSequence} on ${nodeId}`);
      return { topics: topicData.map(({ topic, partitions }) => ({ topicName: topic, partitions: partitions.map(({ partition }) => ({ partition, errorCode: 0, baseOffset: '0' })) })) };
    };
    const brokers = new Map([1, 2].map((nodeId) => [nodeId, { nodeId, produce: produce(nodeId) }]));
    // Broker 1 is slow to answer, so that broker 2's append lands first, as on a real cluster.
    const slow = brokers.get(1)!;
    const fast = slow.produce;
    slow.produce = async (request) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      return fast(request);
    };
    const sequences = new Map<number, number>();
    const cluster = {
      refreshMetadataIfNecessary: async () => {},
      refreshMetadata: async () => {},
      addMultipleTargetTopics: async () => {},
      isConnected: () => true,
      findTopicPartitionMetadata: () => [0, 1].map((partitionId) => ({ partitionId, leader: leaders[partitionId] })),
      findLeaderForPartitions: (_topic: string, partitions: Array<number | string>) => {
        const byLeader: Record<number, number[]> = {};
        for (const partition of partitions.map(Number)) (byLeader[leaders[partition]!] ??= []).push(partition);
        return byLeader;
      },
      findBroker: async ({ nodeId }: { nodeId: number }) => brokers.get(nodeId),
    };
    const eosManager = {
      acquireBrokerLock: async () => {},
      releaseBrokerLock: async () => {},
      isTransactional: () => false,
      getProducerId: () => 1,
      getProducerEpoch: () => 0,
      getSequence: (_topic: string, partition: number) => sequences.get(partition) ?? 0,
      updateSequence: (_topic: string, partition: number, increment: number) => sequences.set(partition, (sequences.get(partition) ?? 0) + increment),
    };
    const logger = { debug: () => {}, error: () => {}, warn: () => {}, info: () => {} };
    const send = sendMessages({
      logger,
      cluster,
      eosManager,
      partitioner: ({ message }: { message: { partition: number } }) => message.partition,
      retrier: createRetry({ retries: 3, initialRetryTime: 1 }),
    });
    await send({ acks: -1, timeout: 1000, topicMessages: [{ topic: 't', messages: [{ partition: 0, value: 'a' }, { partition: 1, value: 'b' }] }] });
    expect(appended.map((line) => line.slice(0, 2)).sort()).toEqual(['p0', 'p1']);
    expect(appended).toContain('p0 seq 0 on 2');
  });

  kafkaTest('sends to a partition added after the producer read its metadata, instead of leaving it out without an error', async ({ kafka }) => {
    const topic = await kafka.createTopic({ partitions: 1 });
    const producer = await kafka.producer();
    await producer.send({ topic, acks: -1, messages: [{ partition: 0, value: 'before' }] });
    // The producer's metadata (up to 5 minutes old by default) still has one partition; unpatched, send() resolved
    // and the messages for partition 1 were never sent.
    await kafka.admin.createPartitions({ topicPartitions: [{ topic, count: 2 }] });
    await producer.send({ topic, acks: -1, messages: Array.from({ length: 10 }, (_, i) => ({ partition: i % 2, value: `after-${i}` })) });
    const ends = (await kafka.admin.fetchTopicOffsets(topic)).map((p) => [p.partition, Number(p.high)]);
    expect(Object.fromEntries(ends)).toEqual({ 0: 6, 1: 5 });
  });
});
