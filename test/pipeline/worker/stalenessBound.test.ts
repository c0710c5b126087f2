import { describe, expect } from 'vitest';
import { auditNamespace, formatAudit } from '../../../pipeline/commands/audit.js';
import { parseExperiment } from '../../../pipeline/common/config.js';
import type { Worker } from '../../../pipeline/worker/worker.js';
import { codecFor } from '../../../schemas/index.js';
import { kafkaTest as test } from '../../support/kafka.js';
import { latestSnapshots, trainWithWorkers } from '../../support/snapshots.js';
import { linearSample } from '../../support/samples.js';

/** The sum of a counter of the workers' registries. */
async function counted(workers: readonly Worker[], name: string): Promise<number> {
  let sum = 0;
  for (const worker of workers) {
    const metric = worker.metrics.registry.getSingleMetric(name);
    sum += ((await metric?.get())?.values ?? []).reduce((n, v) => n + v.value, 0);
  }
  return sum;
}

// Policy `retrain`: every update the server applies is within the bound, however many lanes and workers write, and
// nothing is lost or trained twice on the way. A tight bound, a backlog on 6 partitions and three workers make the
// workers veto their own checkpoints often (3 to 26 times a run at 8 steps per update, 3 to 25 at 4, about 90 at 1).
describe('the job-wide staleness bound (policy retrain)', () => {
  test('three workers on a backlog: every applied update within the bound, every record accounted for once, retrains counted', async ({ kafka }) => {
    const total = 15_000;
    const input = await kafka.createTopic({ partitions: 6, prefix: 'telemetry' });
    const samples = codecFor('TrainingSample');
    await kafka.produce(input, total, (i) => ({ key: `d${i % 50}`, value: samples.encode(linearSample(i, `d${i % 50}`)) }));
    const namespace = `bound-${input}`;
    // The tightest bound the config allows for a budget of 4; with 6 partitions the lanes keep 6 updates in flight
    // (at least one each), and with the policy `apply` the same job applies updates up to about 18 stale.
    const bound = 16;
    const config = parseExperiment({
      brokers: kafka.brokers,
      namespace,
      inputTopic: input,
      model: { kind: 'linear', features: 3, shards: 2, seed: 3, optimizer: { kind: 'sgd', learningRate: 0.05 } },
      batchSize: 32,
      maxInFlightUpdates: bound / 4,
      checkpointIntervalMs: 100,
      server: { staleness: { policy: 'retrain', bound } },
    });
    const lines: string[] = [];
    const workers = await trainWithWorkers(kafka, config, ['bound-w1', 'bound-w2', 'bound-w3'], total, { log: (_, line) => lines.push(line), timeoutMs: 240_000 });
    const retrains = await counted(workers, 'streamgrad_staleness_retrains_total');
    const reread = await counted(workers, 'streamgrad_staleness_reread_records_total');
    const latest = await latestSnapshots(kafka, namespace);
    const summary = [...latest.values()].map((s) => `shard ${s.shard}: staleness max ${s.stalenessMax}, buckets ${s.stalenessCounts.join(' ')}`).join('; ');
    console.error(`[staleness bound ${bound}] ${summary}; ${retrains} checkpoints vetoed, ${reread} records read again`);
    for (const snapshot of latest.values()) {
      expect(snapshot.stalenessMax, `shard ${snapshot.shard}`).toBeLessThanOrEqual(bound);
      expect(snapshot.samplesApplied).toBe(total);
      expect(snapshot.updatesDroppedStale).toBe(0);
    }
    expect(retrains).toBeGreaterThan(0);
    expect(lines.filter((line) => line.includes('checkpoint vetoed')).length).toBe(retrains);
    const audit = await auditNamespace({ kafka: kafka.kafka, namespace, inputTopic: input });
    expect(audit.problems, formatAudit(audit)).toEqual([]);
  }, 300_000);
});
