import { setTimeout as delay } from 'node:timers/promises';
import { concatMap, mergeMap, tap } from 'rxjs';
import { describe, expect } from 'vitest';
import { fromKafka, type Lane } from '../../operators/index.js';
import { waitFor } from '../support/childProcess.js';
import { kafkaTest as test } from '../support/kafka.js';

describe('fromKafka backpressure', () => {
  test('a slow downstream meets 300,000 waiting records: bounded memory, paused and resumed partitions, everything processed, membership kept', async ({ kafka }) => {
    const total = 300_000;
    const partitions = 4;
    const maxInFlight = 2_000;
    const topic = await kafka.createTopic({ partitions });
    await kafka.produce(topic, total, (i) => ({ key: `device-${i % 997}`, value: `reading-${i}` }));

    const lanes: Lane[] = [];
    const seen = new Uint8Array(total);
    let distinct = 0;
    let duplicates = 0;
    const processedPerLane = new Map<number, number>();
    let longestInFlight = 0;
    let longStepDone = false;
    const retainedHeap = () => {
      globalThis.gc?.();
      return process.memoryUsage().heapUsed;
    };
    expect(globalThis.gc, 'vitest runs with --expose-gc').toBeTypeOf('function');
    const heapBefore = retainedHeap();
    let heapPeak = heapBefore;
    const heapSampler = setInterval(() => {
      heapPeak = Math.max(heapPeak, retainedHeap());
    }, 250);

    const subscription = fromKafka({
      kafka: kafka.kafka,
      topics: [topic],
      groupId: kafka.group(),
      maxInFlight,
      // The long step below outlasts the session timeout: only heartbeats during it keep the member in the group.
      consumer: { sessionTimeout: 6_000, heartbeatInterval: 500 },
    })
      .pipe(
        tap((lane) => lanes.push(lane)),
        mergeMap((lane) =>
          lane.records.pipe(
            concatMap(async (record) => {
              longestInFlight = Math.max(longestInFlight, lane.inFlight);
              const done = processedPerLane.get(lane.partition) ?? 0;
              if (lane.partition === 0 && done === 1_000) {
                await delay(8_000);
                longStepDone = true;
              } else if (done < 400) {
                await delay(5);
              }
              processedPerLane.set(lane.partition, done + 1);
              const index = Number((record.value?.toString() ?? '').slice('reading-'.length));
              if (seen[index]! > 0) duplicates++;
              else distinct++;
              seen[index] = 1;
              lane.ack(record.offset);
            }),
          ),
        ),
      )
      .subscribe({ error: (error: unknown) => console.error(error) });

    try {
      await waitFor('every record to be processed', () => distinct === total, 240_000, 200);
    } finally {
      clearInterval(heapSampler);
      subscription.unsubscribe();
    }

    expect(longStepDone).toBe(true);
    // One lane per partition, never revoked: the 8 s step did not cost the membership.
    expect(lanes.map((lane) => lane.partition).sort()).toEqual([0, 1, 2, 3]);
    expect(lanes.every((lane) => !lane.revoked)).toBe(true);
    expect(longestInFlight).toBeLessThanOrEqual(maxInFlight);
    for (const lane of lanes) {
      expect(lane.backpressure.pauses, `pauses of ${lane.name}`).toBeGreaterThan(0);
      expect(lane.backpressure.resumes, `resumes of ${lane.name}`).toBeGreaterThan(0);
    }
    expect(duplicates).toBe(0);
    const growthMb = (heapPeak - heapBefore) / 1024 / 1024;
    console.error(`[backpressure] heap growth ${growthMb.toFixed(1)} MB; pauses ${lanes.map((l) => l.backpressure.pauses).join('/')}`);
    expect(growthMb).toBeLessThan(100);
  }, 300_000);
});
