import { describe, expect } from 'vitest';
import { parseExperiment } from '../../../pipeline/common/config.js';
import { startWorker } from '../../../pipeline/worker/worker.js';
import { cliPath, spawnTs, waitFor } from '../../support/childProcess.js';
import { sineRecord } from '../../support/arbitraries.js';
import { kafkaTest as test } from '../../support/kafka.js';
import { committedSnapshots, latestSnapshots, waitForShards, writeExperimentFile } from '../../support/snapshots.js';


describe('parameter server process', () => {
  test('killed with SIGKILL mid-stream and restarted: every record accounted for exactly once, versions only go up', async ({ kafka }) => {
    const total = 60_000;
    const input = await kafka.createTopic({ partitions: 2, prefix: 'telemetry' });
    const namespace = `pscrash-${input}`;
    const isBad = (i: number) => i % 7_919 === 3;
    await kafka.produce(input, total, sineRecord({ devices: 7, label: (n) => Math.sin(n) - Math.cos(n), corrupt: isBad }));
    const bad = Array.from({ length: total }, (_, i) => i).filter(isBad).length;
    const experiment = {
      brokers: kafka.brokers,
      namespace,
      inputTopic: input,
      model: { kind: 'linear', features: 2, shards: 2, optimizer: { kind: 'adam', learningRate: 0.01 } },
      batchSize: 32,
      checkpointIntervalMs: 100,
      maxInFlightUpdates: 64,
      server: { snapshotEveryUpdates: 25, snapshotIntervalMs: 100, staleness: { policy: 'apply', bound: 1_000 } },
    };
    const configFile = writeExperimentFile(experiment);

    const firstServer = spawnTs(cliPath, ['ps', '--config', configFile]);
    const worker = await startWorker(parseExperiment(experiment), { log: () => {} });
    let killedAt = 0;
    try {
      await waitFor('the first server to publish some snapshots', async () => {
        const latest = await latestSnapshots(kafka, namespace);
        killedAt = Math.min(...[0, 1].map((shard) => latest.get(shard)?.samplesApplied ?? 0));
        return killedAt >= 5_000;
      }, 120_000, 200);
      firstServer.process.kill('SIGKILL');
      expect(await firstServer.exited).toBe('SIGKILL');

      const secondServer = spawnTs(cliPath, ['ps', '--config', configFile]);
      await waitForShards(kafka, namespace, 2, 'every record accounted for in both shards', (s) => s.samplesApplied + s.deadLettered + s.samplesDroppedStale === total);
      secondServer.process.kill('SIGTERM');
      expect(await secondServer.exited).toBe(0);
    } finally {
      worker.stop();
      await worker.done;
      firstServer.process.kill('SIGKILL');
    }

    // Built from counters and offsets, not timing: each record once, as a sample or a dead letter.
    const all = await committedSnapshots(kafka, namespace);
    for (const shard of [0, 1]) {
      const history = all.filter((s) => s.shard === shard);
      const last = history.at(-1)!;
      expect(last.samplesApplied, `shard ${shard}`).toBe(total - bad);
      expect(last.deadLettered).toBe(bad);
      expect(last.updatesDroppedStale).toBe(0);
      history.slice(1).forEach((snapshot, i) => {
        expect(snapshot.version, `shard ${shard} snapshot ${i + 1}`).toBeGreaterThan(history[i]!.version);
        expect(snapshot.samplesApplied).toBeGreaterThanOrEqual(history[i]!.samplesApplied);
      });
    }
    console.error(`[ps crash] killed at ${killedAt} samples applied; ${all.length} snapshots committed`);
  }, 400_000);
});
