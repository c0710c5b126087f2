import { describe, expect } from 'vitest';
import { codecFor } from '../../schemas/index.js';
import type { StatusReport } from '../../pipeline/commands/status.js';
import { sample16 } from '../support/arbitraries.js';
import { cliPath, runCli, spawnTs, waitFor } from '../support/childProcess.js';
import { cliEnv as env, runExperiment as experiment } from '../support/cliRun.js';
import { kafkaTest } from '../support/kafka.js';
import { committedSnapshots, waitForShards, writeExperimentFile } from '../support/snapshots.js';

// Backend-independent (partitions, rebalances, accounting): the auto project runs it, the wasm one does not.
describe('streamgrad run and scale', () => {
  kafkaTest('scale from 2 to 4 partitions and 3 workers mid-run loses nothing, and 4 lanes are active', async ({ kafka }) => {
    const config = experiment(2, 2_000);
    const total = 24_000;
    const extra = 1_000;
    const file = writeExperimentFile(config);
    const run = spawnTs(cliPath, ['run', '--config', file, '--workers', '2', '--count', String(total)], { env: env() });
    try {
      await waitForShards(kafka, config.namespace, 2, 'the first 2,000 samples', (s) => s.samplesApplied >= 2_000, 60_000);
      const scaled = await runCli(['scale', '--config', file, '--partitions', '4', '--workers', '1'], env());
      expect(scaled.code, scaled.stderr.join('\n')).toBe(0);
      expect(scaled.stderr.join('\n')).toMatch(/2 → 4 partitions[\s\S]*added worker-3/);

      // The simulator may finish before its metadata shows the new partitions: write to them directly, so that the
      // new lanes have records to train on whatever the timing.
      const codec = codecFor('TrainingSample');
      await kafka.produce(config.inputTopic, extra, (i) => ({ key: `extra-${i}`, partition: 2 + (i % 2), value: codec.encode(sample16({ label: 0.1 * (i % 7) })) }));
      await waitForShards(kafka, config.namespace, 2, `all ${total + extra} records accounted for`, (s) => s.samplesApplied + s.samplesDroppedStale + s.deadLettered === total + extra, 120_000).catch(async (error: Error) => {
        const read = await runCli(['status', '--config', file, '--json'], env());
        throw new Error(`${error.message}; partitions: ${JSON.stringify((JSON.parse(read.stdout.join('')) as StatusReport).partitions)}`);
      });
      let status: StatusReport | undefined;
      await waitFor('4 partitions owned and trained on', async () => {
        const read = await runCli(['status', '--config', file, '--json'], env());
        status = JSON.parse(read.stdout.join('')) as StatusReport;
        return status.partitions.length === 4 && status.partitions.every((p) => p.owner !== undefined && p.committed > 0 && p.lag <= 1);
      }, 60_000, 1_000).catch((error: Error) => {
        throw new Error(`${error.message}; last status: ${JSON.stringify(status?.partitions)}`);
      });
      expect(new Set(status!.partitions.map((p) => p.owner)).size).toBeGreaterThanOrEqual(2);
    } finally {
      run.process.kill('SIGINT');
    }
    expect(await run.exited).toBe(0);
    const last = (await committedSnapshots(kafka, config.namespace)).filter((s) => s.shard === 1).at(-1)!;
    expect(last.samplesApplied + last.samplesDroppedStale + last.deadLettered).toBe(total + extra);
  }, 240_000);
});
