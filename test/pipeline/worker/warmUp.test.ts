import { Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { auditNamespace, formatAudit } from '../../../pipeline/commands/audit.js';
import { parseExperiment } from '../../../pipeline/common/config.js';
import { topicsOf } from '../../../pipeline/common/topics.js';
import { WarmUp } from '../../../pipeline/worker/warmUp.js';
import { codecFor, type ModelSnapshot } from '../../../schemas/index.js';
import type { KafkaRecord } from '../../../operators/lane.js';
import { kafkaTest as test } from '../../support/kafka.js';
import { trainWithWorkers } from '../../support/snapshots.js';
import { linearSample } from '../../support/samples.js';

/** Only what the warm-up reads of a snapshot. */
const snapshot = (shard: number, samplesApplied: number) => ({ shard, samplesApplied }) as ModelSnapshot;

function fakeLane(partition: number) {
  const records = new Subject<KafkaRecord>();
  return { name: `in[${partition}]`, partition, records, revoked: false };
}

/** Whether `promise` has settled after the pending timers and microtasks of `ms`. */
async function settledWithin(promise: Promise<void>, ms: number): Promise<boolean> {
  let settled = false;
  void promise.then(() => (settled = true));
  await new Promise((resolve) => setTimeout(resolve, ms));
  return settled;
}

/** A warm-up of 1,000 samples over a snapshot stream the test drives, with the lines it logs. */
function warmUpOf(patienceMs: number, maxWaitMs?: number) {
  const snapshots = new Subject<ModelSnapshot>();
  const lines: string[] = [];
  return { snapshots, lines, warmUp: new WarmUp(1_000, snapshots, (line) => lines.push(line), patienceMs, maxWaitMs) };
}

describe('WarmUp', () => {
  it('lets the leading lane (partition 0) train at once, and every lane with a warm-up of 0', async () => {
    const snapshots = new Subject<ModelSnapshot>();
    const stop = new Subject<void>();
    await new WarmUp(1_000, snapshots, () => {}).wait(fakeLane(0), stop, () => false);
    const none = new WarmUp(0, snapshots, () => {});
    expect(none.done).toBe(true);
    await none.wait(fakeLane(3), stop, () => false);
  });

  it('holds the other lanes until shard 0 holds the warm-up samples; other shards do not count', async () => {
    const { snapshots, lines, warmUp } = warmUpOf(10_000);
    const waiting = warmUp.wait(fakeLane(2), new Subject<void>(), () => false);
    expect(await settledWithin(waiting, 20)).toBe(false);
    snapshots.next(snapshot(1, 5_000));
    snapshots.next(snapshot(0, 999));
    expect(await settledWithin(waiting, 20)).toBe(false);
    expect(warmUp.done).toBe(false);
    snapshots.next(snapshot(0, 1_000));
    expect(await settledWithin(waiting, 20)).toBe(true);
    expect(warmUp.done).toBe(true);
    expect(lines[0]).toContain('in[2] waits for the warm-up');
    expect(lines[1]).toContain('the warm-up is over (1000 samples');
  });

  it('gives up once shard 0 has not moved for the patience, which each step of the warm-up restarts', async () => {
    const { snapshots, lines, warmUp } = warmUpOf(150);
    const waiting = warmUp.wait(fakeLane(1), new Subject<void>(), () => false);
    expect(await settledWithin(waiting, 100)).toBe(false);
    snapshots.next(snapshot(0, 10));
    // 200 ms after the start, 100 ms after the progress: still waiting.
    expect(await settledWithin(waiting, 100)).toBe(false);
    expect(await settledWithin(waiting, 150)).toBe(true);
    expect(warmUp.done).toBe(true);
    expect(lines.at(-1)).toMatch(/in\[1\] trains without the warm-up: shard 0's snapshots held 10 of its 1000 samples and did not move for 150 ms/);
  });

  it('holds lanes for at most maxWaitMs from the first wait, however often a trickling partition 0 moves', async () => {
    const { snapshots, lines, warmUp } = warmUpOf(400, 1_200);
    const first = warmUp.wait(fakeLane(1), new Subject<void>(), () => false);
    let applied = 0;
    const trickle = setInterval(() => snapshots.next(snapshot(0, (applied += 10))), 50);
    try {
      expect(await settledWithin(first, 300)).toBe(false);
      // A lane that starts waiting later is let go with the first: the time counts from the first wait.
      const second = warmUp.wait(fakeLane(2), new Subject<void>(), () => false);
      expect(await settledWithin(first, 400)).toBe(false);
      expect(await settledWithin(Promise.all([first, second]).then(() => {}), 1_000)).toBe(true);
    } finally {
      clearInterval(trickle);
    }
    expect(warmUp.done).toBe(true);
    expect(lines.some((line) => /in\[[12]\] trains without the warm-up: shard 0's snapshots held \d+ of its 1000 samples; the warm-up has lasted 1200 ms \(is partition 0 slow\?\)/.test(line))).toBe(true);
  });

  it('lets a lane go when it ends (revoked) or the worker stops, without ending the warm-up', async () => {
    const { lines, warmUp } = warmUpOf(10_000);
    const lane = fakeLane(1);
    const revoked = warmUp.wait(lane, new Subject<void>(), () => false);
    lane.revoked = true;
    lane.records.complete();
    expect(await settledWithin(revoked, 20)).toBe(true);
    // Its buffered windows come by again: they pass at once, without a line each.
    await warmUp.wait(lane, new Subject<void>(), () => false);
    expect(lines).toHaveLength(1);
    const stop = new Subject<void>();
    let stopping = false;
    const stopped = warmUp.wait(fakeLane(2), stop, () => stopping);
    stopping = true;
    stop.next();
    expect(await settledWithin(stopped, 20)).toBe(true);
    expect(warmUp.done).toBe(false);
  });
});

describe('the joint warm-up on a real broker', () => {
  test('two workers on a backlog: only partition 0 trains until shard 0 holds the warm-up, then every lane, nothing lost', async ({ kafka }) => {
    const total = 8_000;
    const partitions = 4;
    const input = await kafka.createTopic({ partitions, prefix: 'telemetry' });
    const samples = codecFor('TrainingSample');
    await kafka.produce(input, total, (i) => ({ key: `d${i % 40}`, partition: i % partitions, value: samples.encode(linearSample(i, `d${i % 40}`)) }));
    const namespace = `warmup-${input}`;
    const batchSize = 32;
    const warmupSteps = 16;
    const config = parseExperiment({
      brokers: kafka.brokers,
      namespace,
      inputTopic: input,
      model: { kind: 'linear', features: 3, shards: 2, seed: 5, optimizer: { kind: 'sgd', learningRate: 0.05 } },
      batchSize,
      stepsPerUpdate: 2,
      warmupSteps,
      checkpointIntervalMs: 100,
    });
    const lines: string[] = [];
    await trainWithWorkers(kafka, config, ['warmup-w1', 'warmup-w2'], total, { log: (worker, line) => lines.push(`${worker}: ${line}`), timeoutMs: 180_000 });
    // Shard 0's updates in the order it applied them: each raised its version by one.
    const codec = codecFor('ParameterUpdate');
    const updates = (await kafka.readCommittedRecords(topicsOf(namespace).updates))
      .filter((record) => record.partition === 0)
      .map((record, index) => {
        const decoded = codec.decode(record.value);
        if (!decoded.ok) throw new Error(`shard 0's update at offset ${record.offset} does not decode: ${decoded.error.message}`);
        return { version: index + 1, update: decoded.value };
      });
    let applied = 0;
    const warmedAt = updates.find(({ update }) => (applied += update.sampleCount) >= warmupSteps * batchSize)?.version;
    expect(warmedAt, 'the version at which shard 0 held the warm-up').toBeDefined();
    const trained = updates.filter(({ update }) => update.sampleCount > 0);
    const leading = trained.filter(({ update }) => update.offsets.every((range) => range.partition === 0));
    const others = trained.filter(({ update }) => update.offsets.some((range) => range.partition !== 0));
    console.error(`[warm-up] ${warmupSteps * batchSize} samples held at shard 0 version ${warmedAt}; ${leading.length} updates of partition 0, ${others.length} of the others, the first of them on version ${Math.min(...others.map(({ update }) => update.baseVersion))}`);
    expect(others.length).toBeGreaterThan(0);
    for (const { version, update } of others) {
      expect(update.baseVersion, `update ${version} (${update.offsets.map((r) => `${r.topic}[${r.partition}]@${r.firstOffset}`).join(', ')}) by ${update.workerId}`).toBeGreaterThanOrEqual(warmedAt!);
    }
    expect(updates.slice(0, warmedAt).every(({ update }) => update.offsets.every((range) => range.partition === 0))).toBe(true);
    // Each worker's lanes of the other partitions said that they waited, and then that they train.
    expect(lines.filter((line) => line.includes('waits for the warm-up')).length).toBeGreaterThan(0);
    expect(lines.some((line) => line.includes('trains without the warm-up'))).toBe(false);
    const audit = await auditNamespace({ kafka: kafka.kafka, namespace, inputTopic: input });
    expect(audit.problems, formatAudit(audit)).toEqual([]);
  }, 240_000);
});
