import { Subject, lastValueFrom, map, mergeMap, takeUntil, tap, toArray } from 'rxjs';
import { describe, expect } from 'vitest';
import { checkpoint, fromKafka, spanOf, type WrittenMessage } from '../../operators/index.js';
import { exactlyOnceDiff, kafkaTest as test } from '../support/kafka.js';

// beforeCommit: a checkpoint that sees where its messages landed and vetoes its own commit. The workers keep the
// staleness bound this way; here the veto is arbitrary, and what must hold is exactly-once all the same.
describe('checkpoint beforeCommit', () => {
  // With a group (live training), and without one (a replay's direct read, whose reopened lane must resume from what
  // its own transactions committed, not from the start of its range).
  for (const grouped of [true, false]) test(`gives each written message the offset it got; a veto aborts the transaction and the lane reads its records again, losing and repeating nothing (${grouped ? 'a group' : 'no group'})`, async ({ kafka }) => {
    const input = await kafka.createTopic({ partitions: 1 });
    const output = await kafka.createTopic({ partitions: 2 });
    const total = 3_000;
    await kafka.produce(input, total, (i) => ({ key: `k${i}`, value: `r-${i}` }));
    const stop = new Subject<void>();
    const seen: WrittenMessage[][] = [];
    let vetoes = 0;
    let lanes = 0;
    let copied = 0;
    const reports = lastValueFrom(
      fromKafka({ kafka: kafka.kafka, topics: [input], ...(grouped ? { groupId: kafka.group() } : {}), exactlyOnce: { transactionalIdPrefix: `tx-${input}` }, maxInFlight: 500, until: stop }).pipe(
        mergeMap((lane) => {
          lanes += 1;
          return lane.records.pipe(
            // Each record to both partitions of the output, named explicitly, so every message gets an offset.
            map((record) => ({ messages: [{ topic: output, messages: [0, 1].map((partition) => ({ partition, value: record.value })) }], covers: [spanOf(record)] })),
            checkpoint({
              lane,
              intervalMs: 50,
              maxPendingOutputs: 200,
              beforeCommit: (written) => {
                seen.push([...written]);
                // Every third checkpoint is vetoed, the first one included.
                if (seen.length % 3 !== 1) return undefined;
                vetoes += 1;
                return `test veto ${vetoes}`;
              },
            }),
          );
        }),
        tap((report) => {
          copied = report.offset;
          if (copied >= total) stop.next();
        }),
        takeUntil(new Promise((resolve) => setTimeout(resolve, 90_000))),
        toArray(),
      ),
    );
    await reports;
    expect(copied).toBe(total);
    expect(vetoes).toBeGreaterThan(1);
    // Each veto ended the lane, and the source opened a new one on the partition it still owns.
    expect(lanes).toBe(vetoes + 1);

    const records = await kafka.readCommittedRecords(output);
    for (const partition of [0, 1]) {
      const values = records.filter((r) => r.partition === partition).map((r) => r.value.toString());
      const { duplicated, missing } = exactlyOnceDiff(values, total);
      expect({ partition, duplicated, missing }).toEqual({ partition, duplicated: [], missing: [] });
    }
    // The offsets the committed checkpoints were given are where their messages are, message for message.
    const committed = seen.filter((_, i) => i % 3 !== 0).flat();
    const at = new Map(records.map((r) => [`${r.partition}:${r.offset}`, r.value.toString()]));
    expect(committed.length).toBe(2 * total);
    for (const { partition, offset, message } of committed) expect(at.get(`${partition}:${offset}`), `${partition}:${offset}`).toBe(String(message.value));
    // A vetoed checkpoint's messages got offsets too, which no read_committed reader sees.
    const vetoed = seen.filter((_, i) => i % 3 === 0).flat();
    expect(vetoed.length).toBeGreaterThan(0);
    for (const { partition, offset } of vetoed) expect(at.has(`${partition}:${offset}`)).toBe(false);
  }, 120_000);

  test('a checkpoint vetoed while the source drains ends its lane, and the source still completes (it leaves the group)', async ({ kafka }) => {
    const input = await kafka.createTopic({ partitions: 2 });
    const output = await kafka.createTopic({ partitions: 1 });
    await kafka.produce(input, 4_000, (i) => ({ key: `k${i}`, value: `r-${i}` }));
    const stop = new Subject<void>();
    let stopped = false;
    let vetoes = 0;
    const started = Date.now();
    await lastValueFrom(
      fromKafka({ kafka: kafka.kafka, topics: [input], groupId: kafka.group(), exactlyOnce: { transactionalIdPrefix: `tx-${input}` }, maxInFlight: 2_000, until: stop }).pipe(
        mergeMap((lane) =>
          lane.records.pipe(
            map((record) => ({ messages: [{ topic: output, messages: [{ value: record.value }] }], covers: [spanOf(record)] })),
            // The first checkpoint tells the source to stop, and it and every later one are vetoed: so are a worker's
            // last ones when the snapshots it checks staleness against fall behind during its drain.
            checkpoint({
              lane,
              intervalMs: 50,
              maxPendingOutputs: 10_000,
              beforeCommit: () => {
                if (!stopped) {
                  stopped = true;
                  stop.next();
                }
                return `test veto ${(vetoes += 1)}`;
              },
            }),
          ),
        ),
        takeUntil(new Promise((resolve) => setTimeout(resolve, 60_000).unref())),
        toArray(),
      ),
    );
    expect(vetoes).toBeGreaterThan(0);
    // The source completed by itself, not at the 60 s guard: it left the group once its last lane was dropped, and
    // what the vetoed checkpoints held is for the partitions' next owner.
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(await kafka.readCommittedRecords(output)).toEqual([]);
  }, 90_000);
});
