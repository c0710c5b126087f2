import type { Admin, Kafka } from 'kafkajs';
import { SourceError } from '../../operators/errors.js';
import { withRetry } from '../../operators/retry.js';
import { ConfigError } from '../../schemas/errors.js';
import type { ExperimentConfig } from './config.js';

/** The topics and groups of one experiment namespace. A replay gets a namespace of its own. */
export interface NamespaceTopics {
  /** ParameterUpdates, one partition per shard. */
  readonly updates: string;
  /** ModelSnapshots, compacted, keyed by shard. */
  readonly model: string;
  /** DeadLetters of input records the workers rejected. */
  readonly deadLetters: string;
  /** DeadLetters of update records the parameter server refused. */
  readonly serverDeadLetters: string;
  /** The consumer group of the workers on the input topic. */
  readonly workerGroup: string;
  /** The consumer group of the parameter servers on the updates topic. */
  readonly serverGroup: string;
  /** The prefix of the workers' transactionalIds (one per input partition). */
  readonly workerTransactions: string;
  /** JSON reports for dashboards: the ingest bridge's figures, `evaluate`'s scores. See `reports.ts`. */
  readonly reports: string;
}

/** Names the topics and groups of namespace `ns`: `<ns>.updates`, `<ns>.model`, `<ns>.dlq`, `<ns>.ps.dlq`, `<ns>.workers`, `<ns>.ps`. */
export function topicsOf(namespace: string): NamespaceTopics {
  return {
    updates: `${namespace}.updates`,
    model: `${namespace}.model`,
    deadLetters: `${namespace}.dlq`,
    serverDeadLetters: `${namespace}.ps.dlq`,
    workerGroup: `${namespace}.workers`,
    serverGroup: `${namespace}.ps`,
    workerTransactions: `${namespace}.worker`,
    reports: `${namespace}.reports`,
  };
}

/**
 * The largest record each namespace topic takes (`max.message.bytes`). An update or a snapshot is one record, so
 * those topics take a large model's; a dead letter carries at most `deadLetterMaxBytes` of its record, and a
 * checkpoint writes them in requests of about 512 KiB.
 */
export const namespaceMessageBytes = { updates: 16 * 1024 * 1024, model: 16 * 1024 * 1024, deadLetters: 2 * 1024 * 1024 } as const;

/** A topic to create: its name, partitions and configuration (the brokers' replication factor). */
export interface TopicSpec {
  readonly topic: string;
  readonly numPartitions: number;
  readonly configEntries?: ReadonlyArray<{ readonly name: string; readonly value: string }>;
}

/**
 * Creates `wanted` (one request per topic: a topic another process creates meanwhile fails only its own request),
 * then waits until every topic of `settled` shows with leaders on the broker asked, and returns their metadata. On
 * a cluster a topic just created takes a moment to show everywhere: kafkajs' own wait can give up with
 * UNKNOWN_TOPIC_OR_PARTITION, which the wait here settles.
 */
export async function createTopics(admin: Admin, wanted: readonly TopicSpec[], settled: readonly string[] = wanted.map((t) => t.topic)) {
  await Promise.all(
    wanted.map((topic) =>
      admin.createTopics({ waitForLeaders: true, topics: [{ ...topic, configEntries: topic.configEntries?.map((entry) => ({ ...entry })), replicationFactor: -1 }] }).catch((error: { type?: string; retriable?: boolean }) => {
        if (error.type !== 'TOPIC_ALREADY_EXISTS' && error.retriable !== true) throw error;
      }),
    ),
  );
  return withRetry(async () => {
    const found = await admin.fetchTopicMetadata({ topics: [...settled] });
    if (found.topics.some((t) => t.partitions.length === 0 || t.partitions.some((p) => p.leader < 0))) throw new SourceError(`topics ${settled.join(', ')} have no leaders yet`, undefined, true);
    return found;
  }, { retries: 10, initialDelayMs: 200 });
}

/**
 * Creates the namespace's topics where they are missing: `<ns>.updates` with
 * one partition per shard, `<ns>.model` compacted with one partition per
 * shard, `<ns>.dlq` and `<ns>.ps.dlq`, each with the record size it must carry
 * ({@link namespaceMessageBytes}). Processes that start together may all try:
 * a topic another one created meanwhile is fine. An existing updates topic with
 * another partition count is an error: shards and partitions must match.
 */
export async function ensureNamespaceTopics(admin: Admin, namespace: string, shards: number): Promise<NamespaceTopics> {
  const topics = topicsOf(namespace);
  const existing = new Set(await admin.listTopics());
  const size = (bytes: number) => ({ name: 'max.message.bytes', value: String(bytes) });
  const specs = [
    { topic: topics.updates, numPartitions: shards, configEntries: [size(namespaceMessageBytes.updates)] },
    { topic: topics.model, numPartitions: shards, configEntries: [{ name: 'cleanup.policy', value: 'compact' }, size(namespaceMessageBytes.model)] },
    { topic: topics.deadLetters, numPartitions: 1, configEntries: [size(namespaceMessageBytes.deadLetters)] },
    { topic: topics.serverDeadLetters, numPartitions: 1, configEntries: [size(namespaceMessageBytes.deadLetters)] },
  ];
  const metadata = await createTopics(admin, specs.filter((t) => !existing.has(t.topic)), specs.map((t) => t.topic));
  const updates = metadata.topics.find((t) => t.name === topics.updates);
  if (updates && updates.partitions.length !== shards) {
    throw new ConfigError('model.shards', `the model has ${shards} shards but ${topics.updates} has ${updates.partitions.length} partitions; use a new namespace or the same shard count`);
  }
  return topics;
}

/**
 * The reports topic of a namespace (one partition, a day's retention: dashboards read its recent records), where
 * missing. Not among {@link ensureNamespaceTopics}: workers and servers neither write nor need it.
 */
export async function ensureReportsTopic(admin: Admin, namespace: string): Promise<string> {
  const topic = topicsOf(namespace).reports;
  if (!(await admin.listTopics()).includes(topic)) await createTopics(admin, [{ topic, numPartitions: 1, configEntries: [{ name: 'retention.ms', value: String(24 * 3600 * 1000) }] }]);
  return topic;
}

/** Creates the input topic (with `inputPartitions`) and, unless `inputOnly`, the namespace's topics and its reports topic, where missing. */
export async function ensureExperimentTopics(kafka: Kafka, config: ExperimentConfig, inputOnly = false): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (!(await admin.listTopics()).includes(config.inputTopic)) await createTopics(admin, [{ topic: config.inputTopic, numPartitions: config.inputPartitions }]);
    if (!inputOnly) {
      await ensureNamespaceTopics(admin, config.namespace, config.model.shards);
      await ensureReportsTopic(admin, config.namespace);
    }
  } finally {
    await admin.disconnect();
  }
}

/** Grows the input topic to `partitions`; running workers pick the new partitions up within seconds. */
export async function growInputTopic(kafka: Kafka, topic: string, partitions: number): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    // Only a topic the broker does not know is a bad setting; any other error (a broker away) is itself.
    const missing = (error: { type?: string }) => (error.type === 'UNKNOWN_TOPIC_OR_PARTITION' ? { topics: [] } : Promise.reject(error));
    const [metadata] = (await admin.fetchTopicMetadata({ topics: [topic] }).catch(missing)).topics;
    if (!metadata) throw new ConfigError('inputTopic', `topic '${topic}' does not exist on the broker`);
    const current = metadata.partitions.length;
    if (partitions < current) throw new ConfigError('--partitions', `${topic} has ${current} partitions; Kafka can only add partitions, so ask for ${current} or more`);
    if (partitions > current) await admin.createPartitions({ topicPartitions: [{ topic, count: partitions }] });
    return current;
  } finally {
    await admin.disconnect();
  }
}
