import { randomUUID } from 'node:crypto';
import { Kafka, logLevel, type Admin, type Consumer, type ConsumerConfig, type Message, type Producer, type ProducerConfig } from 'kafkajs';
import { inject, test as baseTest } from 'vitest';
import { waitFor } from './childProcess.js';

/** The bootstrap list of the run's broker, as chosen by the global setup. */
export function testBrokers(): string[] {
  return inject('kafkaBrokers').split(',');
}

/**
 * A test's own slice of the broker: random topic and group names, and clients
 * that are all disconnected, and topics and groups that are all deleted, when
 * the test ends, whether it passed or not.
 */
export class KafkaFixture {
  readonly kafka: Kafka;
  readonly admin: Admin;
  private readonly id = randomUUID().slice(0, 8);
  private readonly topics = new Set<string>();
  private readonly groups = new Set<string>();
  private readonly clients: Array<Producer | Consumer> = [];

  constructor(readonly brokers: string[] = testBrokers()) {
    this.kafka = new Kafka({ clientId: `test-${this.id}`, brokers, logLevel: logLevel.WARN });
    this.admin = this.kafka.admin();
  }

  /** A fresh topic with `partitions` partitions, deleted after the test. */
  async createTopic(options: { partitions?: number; prefix?: string; configEntries?: Record<string, string> } = {}): Promise<string> {
    const topic = `${options.prefix ?? 'test'}-${this.id}-${this.topics.size}`;
    this.topics.add(topic);
    await this.admin.connect();
    const partitions = options.partitions ?? 1;
    const created = await this.admin.createTopics({
      waitForLeaders: true,
      topics: [{
        topic,
        numPartitions: partitions,
        replicationFactor: -1,
        configEntries: Object.entries(options.configEntries ?? {}).map(([name, value]) => ({ name, value })),
      }],
    }).catch(async (error: { retriable?: boolean }) => {
      // On a broker that has just started, kafkajs' wait for the leaders can give up with a retriable metadata
      // error (UNKNOWN_TOPIC_OR_PARTITION) although the topic was created: wait for the leaders here instead.
      if (!error.retriable) throw error;
      await waitFor(`leaders of ${topic}`, async () => {
        const [metadata] = (await this.admin.fetchTopicMetadata({ topics: [topic] })).topics;
        return metadata !== undefined && metadata.partitions.length === partitions && metadata.partitions.every((p) => p.leader >= 0);
      }, 30_000, 100);
      return true;
    });
    if (!created) throw new Error(`topic ${topic} already existed`);
    return topic;
  }

  /** A fresh consumer group id, deleted after the test. */
  group(prefix = 'group'): string {
    const group = `${prefix}-${this.id}-${this.groups.size}`;
    this.groups.add(group);
    return group;
  }

  async producer(config: ProducerConfig = {}): Promise<Producer> {
    const producer = this.kafka.producer(config);
    this.clients.push(producer);
    await producer.connect();
    return producer;
  }

  async consumer(config: Partial<ConsumerConfig> = {}): Promise<Consumer> {
    const consumer = this.kafka.consumer({ groupId: this.group(), ...config });
    if (config.groupId) this.groups.add(config.groupId);
    this.clients.push(consumer);
    await consumer.connect();
    return consumer;
  }

  /** Produces `count` messages made by `make`, in requests of 5,000, with acks from all replicas. */
  async produce(topic: string, count: number, make: (i: number) => Message): Promise<void> {
    const producer = await this.producer();
    for (let start = 0; start < count; start += 5_000) {
      const messages = Array.from({ length: Math.min(5_000, count - start) }, (_, i) => make(start + i));
      await producer.send({ topic, acks: -1, messages });
    }
    await producer.disconnect();
  }

  /**
   * Reads a whole topic with read_committed, once no transaction on it is open:
   * every partition is read up to the end offset it has when the call starts.
   * Returns the records, in the order each partition holds them.
   */
  async readCommittedRecords(topic: string): Promise<Array<{ partition: number; offset: number; value: Buffer }>> {
    await this.admin.connect();
    const ends = new Map((await this.admin.fetchTopicOffsets(topic)).map((p) => [p.partition, Number(p.high)]));
    const reached = new Map<number, number>();
    const records: Array<{ partition: number; offset: number; value: Buffer }> = [];
    const done = () => [...ends].every(([partition, end]) => end === 0 || (reached.get(partition) ?? 0) >= end);
    if (done()) return records;
    const consumer = await this.consumer({ readUncommitted: false });
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve) => {
      const note = (partition: number, lastOffset: string) => {
        reached.set(partition, Math.max(reached.get(partition) ?? 0, Number(lastOffset) + 1));
        if (done()) resolve();
      };
      consumer.on(consumer.events.END_BATCH_PROCESS, (event) => note(event.payload.partition, event.payload.lastOffset));
      void consumer.run({
        eachBatch: async ({ batch }) => {
          for (const message of batch.messages) records.push({ partition: batch.partition, offset: Number(message.offset), value: message.value ?? Buffer.alloc(0) });
        },
      });
    });
    await consumer.disconnect();
    return records;
  }

  /** The values of {@link readCommittedRecords}. */
  async readCommittedValues(topic: string): Promise<Buffer[]> {
    return (await this.readCommittedRecords(topic)).map((record) => record.value);
  }

  /** {@link readCommittedValues}, as strings. */
  async readCommitted(topic: string): Promise<string[]> {
    return (await this.readCommittedValues(topic)).map((value) => value.toString());
  }

  /** The sum over partitions of the group's committed offsets on `topic`. */
  async committedTotal(groupId: string, topic: string): Promise<number> {
    await this.admin.connect();
    const [offsets] = await this.admin.fetchOffsets({ groupId, topics: [topic] });
    return (offsets?.partitions ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
  }

  async cleanup(): Promise<void> {
    await Promise.allSettled(this.clients.map((client) => client.disconnect()));
    await this.admin.connect();
    if (this.groups.size > 0) {
      const existing = new Set((await this.admin.listGroups()).groups.map((g) => g.groupId));
      const ours = [...this.groups].filter((g) => existing.has(g));
      // A group whose last member has not yet timed out cannot be deleted; it expires by itself.
      if (ours.length > 0) await this.admin.deleteGroups(ours).catch(() => {});
    }
    if (this.topics.size > 0) await this.admin.deleteTopics({ topics: [...this.topics] });
    await this.admin.disconnect();
  }
}

/** `test` with a `kafka` fixture: a {@link KafkaFixture} that is cleaned up after each test. */
export const kafkaTest = baseTest.extend<{ kafka: KafkaFixture }>({
  // eslint-disable-next-line no-empty-pattern -- vitest reads fixture dependencies from this pattern
  kafka: async ({}, use) => {
    const fixture = new KafkaFixture();
    try {
      await use(fixture);
    } finally {
      await fixture.cleanup();
    }
  },
});

/** How a copy of the values `r-0 … r-(total-1)` differs from exactly once: the first few duplicated and missing values. */
export function exactlyOnceDiff(copied: readonly string[], total: number): { duplicated: string[]; missing: string[]; count: number } {
  const counts = new Map<string, number>();
  for (const value of copied) counts.set(value, (counts.get(value) ?? 0) + 1);
  const duplicated = [...counts].filter(([, n]) => n > 1).slice(0, 5).map(([value]) => value);
  const missing: string[] = [];
  for (let i = 0; i < total && missing.length < 5; i++) if (!counts.has(`r-${i}`)) missing.push(`r-${i}`);
  return { duplicated, missing, count: copied.length };
}
