import { describe, expect } from 'vitest';
import { ConfigError } from '../../../schemas/errors.js';
import { ensureNamespaceTopics, namespaceMessageBytes, topicsOf } from '../../../pipeline/common/topics.js';
import { kafkaTest } from '../../support/kafka.js';

describe('namespace topics', () => {
  kafkaTest('processes that start together all create the namespace topics without failing; a shard count that does not match is a config error', async ({ kafka }) => {
    const namespace = `topics-${Date.now()}`;
    const topics = topicsOf(namespace);
    await kafka.admin.connect();
    // Six processes at once, each with its own admin client, as `ps` and workers starting together.
    const admins = Array.from({ length: 6 }, () => kafka.kafka.admin());
    await Promise.all(admins.map((admin) => admin.connect()));
    try {
      await Promise.all(admins.map((admin) => ensureNamespaceTopics(admin, namespace, 3)));
      const metadata = await kafka.admin.fetchTopicMetadata({ topics: [topics.updates, topics.model, topics.deadLetters, topics.serverDeadLetters] });
      expect(metadata.topics.map((t) => [t.name, t.partitions.length]).sort()).toEqual([[topics.deadLetters, 1], [topics.model, 3], [topics.serverDeadLetters, 1], [topics.updates, 3]].sort());
      const configs = await kafka.admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2, name: topics.model, configNames: ['cleanup.policy', 'max.message.bytes'] }] });
      expect(Object.fromEntries(configs.resources[0]!.configEntries.map((e) => [e.configName, e.configValue]))).toEqual({ 'cleanup.policy': 'compact', 'max.message.bytes': String(namespaceMessageBytes.model) });
      await expect(ensureNamespaceTopics(kafka.admin, namespace, 2)).rejects.toBeInstanceOf(ConfigError);
    } finally {
      await Promise.all(admins.map((admin) => admin.disconnect()));
      await kafka.admin.deleteTopics({ topics: [topics.updates, topics.model, topics.deadLetters, topics.serverDeadLetters] });
    }
  });
});
