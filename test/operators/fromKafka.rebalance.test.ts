import { setTimeout as delay } from 'node:timers/promises';
import { concatMap, map, mergeMap, tap, type Subscription } from 'rxjs';
import { describe, expect } from 'vitest';
import { checkpoint, fromKafka, spanOf, type Lane } from '../../operators/index.js';
import { waitFor } from '../support/childProcess.js';
import { exactlyOnceDiff, kafkaTest as test } from '../support/kafka.js';

describe('fromKafka rebalances', () => {
  test('a consumer joins mid-stream and another leaves: every input is still copied exactly once', async ({ kafka }) => {
    const total = 150_000;
    const input = await kafka.createTopic({ partitions: 6, prefix: 'in' });
    const output = await kafka.createTopic({ partitions: 6, prefix: 'out' });
    const group = kafka.group('rebalance');
    await kafka.produce(input, total, (i) => ({ key: `k${i % 101}`, value: `r-${i}` }));

    const lanesOf = new Map<string, Lane[]>();
    const members = new Map<string, Subscription>();
    const errors: unknown[] = [];
    const join = (member: string) => {
      lanesOf.set(member, []);
      let step = 0;
      const subscription = fromKafka({
        kafka: kafka.kafka,
        topics: [input],
        groupId: group,
        exactlyOnce: { transactionalIdPrefix: `tx-${group}` },
        maxInFlight: 1_000,
        consumer: { sessionTimeout: 10_000, heartbeatInterval: 500 },
      })
        .pipe(
          tap((lane) => lanesOf.get(member)!.push(lane)),
          mergeMap((lane) =>
            lane.records.pipe(
              // Slow enough that the copy is still running when members come and go.
              concatMap(async (record) => {
                if (++step % 20 === 0) await delay(2);
                return record;
              }),
              map((record) => ({ messages: [{ topic: output, messages: [{ key: record.key, value: record.value }] }], covers: [spanOf(record)] })),
              checkpoint({ lane, intervalMs: 100 }),
            ),
          ),
        )
        .subscribe({ error: (error: unknown) => errors.push(error) });
      members.set(member, subscription);
    };
    const committed = () => kafka.committedTotal(group, input);

    join('first');
    join('third');
    await waitFor('30,000 records committed', async () => (await committed()) >= 30_000, 120_000);
    join('second');
    await waitFor('the second consumer to get lanes', () => lanesOf.get('second')!.length > 0, 60_000);
    // Every member's lanes know how many partitions their member holds (a worker's budget of updates in flight scales by it).
    const heldAsOpen = () => {
      const open = [...lanesOf.values()].map((lanes) => lanes.filter((lane) => !lane.revoked));
      return open.flat().length === 6 && open.every((lanes) => lanes.every((lane) => lane.partitionsHeld === lanes.length));
    };
    await waitFor("each member's lanes to report the partitions it holds", heldAsOpen, 60_000);
    await waitFor('80,000 records committed', async () => (await committed()) >= 80_000, 120_000);
    const atLeave = await committed();
    members.get('third')!.unsubscribe();
    await waitFor('every record committed', async () => (await committed()) === total, 180_000);
    members.get('first')!.unsubscribe();
    members.get('second')!.unsubscribe();

    expect(errors.map((error) => String(error))).toEqual([]);
    expect(atLeave).toBeLessThan(total);
    const revoked = [...lanesOf.values()].flat().filter((lane) => lane.revoked).length;
    expect(revoked).toBeGreaterThan(0);

    const copied = await kafka.readCommitted(output);
    expect(exactlyOnceDiff(copied, total)).toEqual({ duplicated: [], missing: [], count: total });
    console.error(`[rebalance] ${revoked} lanes revoked; ${atLeave} committed when the third member left`);
  }, 400_000);
});
