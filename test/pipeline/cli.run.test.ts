import { randomUUID } from 'node:crypto';
import { describe, expect } from 'vitest';
import { codecFor, type ModelSnapshot } from '../../schemas/index.js';
import { sample16 } from '../support/arbitraries.js';
import { backendNames } from '../../pipeline/common/backend.js';
import type { StatusReport } from '../../pipeline/commands/status.js';
import { cliPath, runCli, spawnTs, waitFor } from '../support/childProcess.js';
import { kafkaTest, testBrokers } from '../support/kafka.js';
import { committedSnapshots, waitForShards, writeExperimentFile } from '../support/snapshots.js';

const env = () => ({ KAFKA_BROKERS: testBrokers().join(',') });

function experiment(partitions: number, ratePerSecond: number, training: object = {}) {
  const id = randomUUID().slice(0, 8);
  return {
    namespace: `run-${id}`,
    inputTopic: `run-${id}.telemetry`,
    inputPartitions: partitions,
    model: { kind: 'linear', features: 16, shards: 2, optimizer: { kind: 'adam', learningRate: 0.03 } },
    ...training,
    server: { staleness: { policy: 'scale', bound: 4 } },
    simulator: { devices: 40, ratePerSecond, seed: 11, dropoutRate: 0.002 },
    metricsPort: 0,
    sessionTimeoutMs: 6_000,
  };
}

/** Mean loss per sample between two snapshots of a shard. */
const lossBetween = (from: ModelSnapshot | undefined, to: ModelSnapshot) => (to.lossSum - (from?.lossSum ?? 0)) / (to.samplesApplied - (from?.samplesApplied ?? 0));

describe('streamgrad run', () => {
  kafkaTest('2 workers train on every simulated record, the loss falls, and each process serves /metrics', async ({ kafka }) => {
    // Small batches and little staleness: many steps in a short test, and a steady descent.
    const config = experiment(4, 2_000, { batchSize: 64, maxInFlightUpdates: 4 });
    const total = 16_000;
    const run = spawnTs(cliPath, ['run', '--config', writeExperimentFile(config), '--workers', '2', '--count', String(total)], { env: env() });
    try {
      await waitForShards(kafka, config.namespace, 2, `all ${total} records accounted for`, (s) => s.samplesApplied + s.samplesDroppedStale + s.deadLettered === total, 120_000);

      const endpoints = run.errors.map((line) => /^\[run\] (\S+): .*Prometheus metrics at (http:\S+)/.exec(line)).filter((m) => m !== null);
      expect(endpoints.map((m) => m[1]).sort()).toEqual(['ps', 'worker-1', 'worker-2']);
      const scrape = async (who: string) => (await fetch(endpoints.find((m) => m[1] === who)![2]!)).text();
      const server = await scrape('ps');
      expect(server).toMatch(/^streamgrad_freshness_ms_bucket\{.*shard="0"/m);
      expect(server).toMatch(/^streamgrad_update_staleness_bucket\{/m);
      // Every process runs the backend that `backend: auto` picks on this machine.
      const backend = /^streamgrad_backend_info\{.*backend="(\w+)".*\} 1$/m.exec(server)?.[1];
      expect(backendNames).toContain(backend);
      // The wasm project sets STREAMGRAD_BACKEND: `backend: auto` (the default) defers to it, in every process.
      if (process.env.STREAMGRAD_BACKEND) expect(backend).toBe(process.env.STREAMGRAD_BACKEND);
      const workers = await Promise.all(['worker-1', 'worker-2'].map(scrape));
      const trained = workers.map((text) => Number(/^streamgrad_samples_total\{[^}]*\} (\d+)/m.exec(text)?.[1]));
      expect(trained.every((n) => n > 0)).toBe(true);
      for (const text of workers) {
        expect(text).toMatch(/^streamgrad_dead_letters_total\{/m);
        expect(text).toMatch(/^streamgrad_step_seconds_bucket\{/m);
        expect(text).toMatch(/^streamgrad_consumer_lag\{.*partition="\d"/m);
        expect(text).toContain(`backend="${backend}"`);
      }
      const status = (await runCli(['status', '--config', writeExperimentFile(config)], env())).stdout.join('\n');
      expect(status).toMatch(new RegExp(`^0 .* ${config.namespace}-worker-[12]$`, 'm'));
      expect(status).toMatch(/^shard +version +samplesApplied/m);
      expect(status).toMatch(new RegExp(`dead letters [1-9]`));
    } finally {
      run.process.kill('SIGINT');
    }
    expect(await run.exited).toBe(0);
    expect(run.lines.join('\n')).toMatch(/partition +end +committed +lag/);

    const history = (await committedSnapshots(kafka, config.namespace)).filter((s) => s.shard === 0);
    const last = history.at(-1)!;
    expect(last.samplesApplied + last.samplesDroppedStale + last.deadLettered).toBe(total);
    expect(last.deadLettered).toBeGreaterThan(0);
    const early = history.find((s) => s.samplesApplied >= 1_000)!;
    const late = history.find((s) => s.samplesApplied >= last.samplesApplied * 0.8);
    expect(lossBetween(late, last)).toBeLessThan(lossBetween(undefined, early) * 0.8);
  }, 180_000);

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
