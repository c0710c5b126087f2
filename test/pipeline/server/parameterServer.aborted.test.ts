import { describe, expect } from 'vitest';
import { parseExperiment } from '../../../pipeline/common/config.js';
import { topicsOf } from '../../../pipeline/common/topics.js';
import { startParameterServer } from '../../../pipeline/server/parameterServer.js';
import { waitFor } from '../../support/childProcess.js';
import { kafkaTest as test } from '../../support/kafka.js';
import { latestSnapshots } from '../../support/snapshots.js';

describe('parameter server', () => {
  test('a shard whose updates topic holds only aborted transactions still publishes a snapshot whose updatesOffset passes them', async ({ kafka }) => {
    const input = await kafka.createTopic({ partitions: 1, prefix: 'aborted' });
    const namespace = `aborted-${input}`;
    const config = parseExperiment({ brokers: kafka.brokers, namespace, inputTopic: input, model: { kind: 'linear', features: 2, shards: 2 }, sessionTimeoutMs: 6_000 });
    const server = await startParameterServer(config, { log: () => {} });
    try {
      // A worker whose every checkpoint is vetoed: transactions on shard 0's partition, all aborted.
      const producer = kafka.kafka.producer({ transactionalId: `aborter-${input}`, idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      for (let i = 0; i < 4; i++) {
        const transaction = await producer.transaction();
        await transaction.send({ topic: topicsOf(namespace).updates, messages: Array.from({ length: 5 }, () => ({ partition: 0, value: Buffer.from('never applied') })) });
        await transaction.abort();
      }
      await producer.disconnect();
      // 4 × (5 records + 1 abort marker) = 24 offsets, none of them an update to take in.
      let snapshot: { version: number; updatesOffset: number } | undefined;
      await waitFor('a snapshot of shard 0 past the aborted records', async () => {
        snapshot = (await latestSnapshots(kafka, namespace)).get(0);
        return snapshot !== undefined && snapshot.updatesOffset >= 24;
      }, 30_000, 200);
      expect(snapshot).toMatchObject({ version: 0 });
    } finally {
      server.stop();
      await server.done;
    }
  }, 60_000);
});
