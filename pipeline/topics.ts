import type { Admin } from 'kafkajs';
import { ConfigError } from '../schemas/errors.js';

/** The topics and groups of one experiment namespace. A replay gets a namespace of its own. */
export interface NamespaceTopics {
  /** ParameterUpdates, one partition per shard. */
  readonly updates: string;
  /** ModelSnapshots, compacted, keyed by shard. */
  readonly model: string;
  /** DeadLetters. */
  readonly deadLetters: string;
  /** The consumer group of the workers on the input topic. */
  readonly workerGroup: string;
  /** The consumer group of the parameter servers on the updates topic. */
  readonly serverGroup: string;
  /** The prefix of the workers' transactionalIds (one per input partition). */
  readonly workerTransactions: string;
}

/** Names the topics and groups of namespace `ns`: `<ns>.updates`, `<ns>.model`, `<ns>.dlq`, `<ns>.workers`, `<ns>.ps`. */
export function topicsOf(namespace: string): NamespaceTopics {
  return {
    updates: `${namespace}.updates`,
    model: `${namespace}.model`,
    deadLetters: `${namespace}.dlq`,
    workerGroup: `${namespace}.workers`,
    serverGroup: `${namespace}.ps`,
    workerTransactions: `${namespace}.worker`,
  };
}

/**
 * Creates the namespace's topics where they are missing: `<ns>.updates` with
 * one partition per shard, `<ns>.model` compacted with one partition per
 * shard, and `<ns>.dlq`. An existing updates topic with another partition
 * count is an error: shards and partitions must match.
 */
export async function ensureNamespaceTopics(admin: Admin, namespace: string, shards: number): Promise<NamespaceTopics> {
  const topics = topicsOf(namespace);
  const existing = new Set(await admin.listTopics());
  const wanted = [
    { topic: topics.updates, numPartitions: shards, configEntries: [] as Array<{ name: string; value: string }> },
    { topic: topics.model, numPartitions: shards, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] },
    { topic: topics.deadLetters, numPartitions: 1, configEntries: [] },
  ].filter((t) => !existing.has(t.topic));
  if (wanted.length > 0) {
    try {
      await admin.createTopics({ waitForLeaders: true, topics: wanted.map((t) => ({ ...t, replicationFactor: -1 })) });
    } catch (error) {
      // Another process created them at the same time: fine, as long as they exist now.
      if ((error as { type?: string }).type !== 'TOPIC_ALREADY_EXISTS') throw error;
    }
  }
  const [updates] = (await admin.fetchTopicMetadata({ topics: [topics.updates] })).topics;
  if (updates && updates.partitions.length !== shards) {
    throw new ConfigError('model.shards', `the model has ${shards} shards but ${topics.updates} has ${updates.partitions.length} partitions; use a new namespace or the same shard count`);
  }
  return topics;
}
