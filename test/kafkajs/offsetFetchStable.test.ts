import { describe, expect } from 'vitest';
import { waitFor } from '../support/childProcess.js';
import { kafkaTest } from '../support/kafka.js';

// kafkajs' OffsetFetch, patched to v7 (patches/kafkajs+2.2.4.patch) for require_stable (KIP-447). A transaction's
// offsets reach the group only after its commit marker is handled, asynchronously, by the group coordinator: without
// require_stable, a partition's next owner could read the offset from before a commit that had already happened, and
// train that commit's records again.
describe('kafkajs fetchOffsets with requireStable (patched)', () => {
  kafkaTest('refuses, as retriable, an offset a transaction holds pending, and answers the committed one once it is decided', async ({ kafka }) => {
    const topic = await kafka.createTopic();
    const groupId = kafka.group();
    await kafka.admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '5' }] });
    const committed = async (requireStable: boolean) => (await kafka.admin.fetchOffsets({ groupId, topics: [topic], requireStable }))[0]!.partitions[0]!.offset;

    for (const [outcome, expected] of [['commit', '10'], ['abort', '10']] as const) {
      const producer = await kafka.producer({ transactionalId: `${groupId}-${outcome}`, idempotent: true, maxInFlightRequests: 1 });
      const transaction = await producer.transaction();
      await transaction.sendOffsets({ consumerGroupId: groupId, topics: [{ topic, partitions: [{ partition: 0, offset: outcome === 'commit' ? '10' : '20' }] }] });
      // The hazard: a plain fetch answers the old offset while the new one is pending.
      expect(await committed(false)).toBe(outcome === 'commit' ? '5' : '10');
      await expect(committed(true)).rejects.toMatchObject({ type: 'UNSTABLE_OFFSET_COMMIT', retriable: true });
      await (outcome === 'commit' ? transaction.commit() : transaction.abort());
      let stable: string | undefined;
      await waitFor(`the ${outcome} to settle`, async () => {
        stable = await committed(true).catch(() => undefined);
        return stable !== undefined;
      }, 30_000, 20);
      expect(stable).toBe(expected);
      await producer.disconnect();
    }
  });
});
