import { describe, expect } from 'vitest';
import { spawnTs, cliPath } from '../../support/childProcess.js';
import { cliEnv as env, runExperiment as experiment } from '../../support/cliRun.js';
import { kafkaTest } from '../../support/kafka.js';
import { latestSnapshots, waitForShards, writeExperimentFile } from '../../support/snapshots.js';

describe('a lane that waits for snapshots', () => {
  kafkaTest('keeps up with a live stream: the records that come while it waits go into its next update, not a queue of small ones', async ({ kafka }) => {
    // Each lane waits after every update for a snapshot that holds it (maxInFlightUpdates 0, which policy `retrain`
    // refuses: `apply`), and the server publishes 700 ms after its last snapshot at the soonest: a round trip of most
    // of a second per update. The stream brings 1,000 samples/s per partition. Cut by batchMaxWaitMs (50 ms) while the
    // lane waited, its windows held about 115 samples each and queued up, one update per round trip: 60 s after launch,
    // half of the 20 s stream was trained (20,452 of 40,000 samples, 177 updates per shard).
    const rate = 2_000;
    const total = 40_000;
    const config = experiment(2, rate, { maxInFlightUpdates: 0, warmupSteps: 0, server: { snapshotEveryUpdates: 1_000, snapshotIntervalMs: 700, snapshotIdleMs: 700, staleness: { policy: 'apply' } } });
    const started = Date.now();
    const run = spawnTs(cliPath, ['run', '--config', writeExperimentFile(config), '--workers', '1', '--count', String(total), '--no-dashboard'], { env: env() });
    try {
      // 20 s of stream, a worker's start-up (TensorFlow, the group) and room for a loaded machine.
      await waitForShards(kafka, config.namespace, 2, `all ${total} records accounted for within 60 s`, (s) => s.samplesApplied + s.samplesDroppedStale + s.deadLettered === total, 60_000);
      const seconds = (Date.now() - started) / 1000;
      const shard0 = (await latestSnapshots(kafka, config.namespace)).get(0)!;
      console.error(`[waiting lane] ${total} samples at ${rate}/s trained in ${seconds.toFixed(1)} s from launch, ${shard0.version} updates on shard 0 (${Math.round(total / shard0.version)} samples each)`);
      // The updates hold what came during a round trip (most of 1,000), not what came in 50 ms.
      expect(shard0.version).toBeLessThan(total / 150);
    } finally {
      run.process.kill('SIGINT');
    }
    expect(await run.exited).toBe(0);
  }, 120_000);
});
