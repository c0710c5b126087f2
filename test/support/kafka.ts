import { randomUUID } from 'node:crypto';
import { Kafka, logLevel, type Admin, type Consumer, type ConsumerConfig, type Producer, type ProducerConfig } from 'kafkajs';
import { inject, test as baseTest } from 'vitest';

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
    const created = await this.admin.createTopics({
      waitForLeaders: true,
      topics: [{
        topic,
        numPartitions: options.partitions ?? 1,
        replicationFactor: -1,
        configEntries: Object.entries(options.configEntries ?? {}).map(([name, value]) => ({ name, value })),
      }],
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

  async cleanup(): Promise<void> {
    await Promise.allSettled(this.clients.map((client) => client.disconnect()));
    await this.admin.connect();
    if (this.groups.size > 0) {
      const existing = new Set((await this.admin.listGroups()).groups.map((g) => g.groupId));
      const ours = [...this.groups].filter((g) => existing.has(g));
      if (ours.length > 0) await this.admin.deleteGroups(ours);
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
