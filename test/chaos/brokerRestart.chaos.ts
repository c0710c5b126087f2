import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { auditNamespace, formatAudit } from '../../pipeline/audit.js';
import { topicsOf } from '../../pipeline/topics.js';
import { codecFor } from '../../schemas/index.js';
import { sineReading } from '../support/arbitraries.js';
import { runInfraScript } from '../support/broker.js';
import { waitFor } from '../support/childProcess.js';
import { CliProcesses, recordChaosRun, waitUntilAccounted } from '../support/processes.js';
import { writeExperimentFile } from '../support/snapshots.js';

// A broker of this test's own: it is killed, which the shared test broker must never be.
const port = Number(process.env.STREAMGRAD_TEST_RESTART_PORT ?? 19492);
const outageMs = Number(process.env.STREAMGRAD_TEST_OUTAGE_MS ?? 15_000);

describe('broker restart', () => {
  it(`a server and two workers ride out kill -9 of the broker and ${outageMs / 1000} s without it: nothing lost, nothing twice, nobody exits`, async () => {
    const startedAt = Date.now();
    const dataDir = mkdtempSync(join(tmpdir(), 'streamgrad-restart-'));
    const start = async () => {
      const started = await runInfraScript('start', ['--port', String(port), '--data-dir', dataDir]);
      if (started.code !== 0) throw new Error(`infra/kafka/start failed: ${started.stderr}`);
      return started.stdout.split('\n').at(-1)!;
    };
    const brokers = [await start()];
    const kafka = new Kafka({ clientId: 'restart-test', brokers, logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    const processes = new CliProcesses(writeExperimentFile({
      brokers,
      namespace: 'restart',
      inputTopic: 'restart.in',
      model: { kind: 'mlp', features: 4, shards: 2, layers: [{ units: 16 }] },
      batchSize: 32,
      checkpointIntervalMs: 200,
      sessionTimeoutMs: 10_000,
      server: { snapshotEveryUpdates: 20, snapshotIntervalMs: 100 },
    }), brokers);
    const asked = new Set<ReturnType<CliProcesses['spawn']>>();
    try {
      await admin.connect();
      await admin.createTopics({ waitForLeaders: true, topics: [{ topic: 'restart.in', numPartitions: 4 }] });
      const samples = codecFor('TrainingSample');
      const producer = kafka.producer();
      await producer.connect();
      const total = Number(process.env.STREAMGRAD_CHAOS_RECORDS ?? 40_000);
      for (let from = 0; from < total; from += 5_000) {
        await producer.send({ topic: 'restart.in', acks: -1, messages: Array.from({ length: Math.min(5_000, total - from) }, (_, k) => ({ key: `d${(from + k) % 7}`, value: (from + k) % 997 === 3 ? Buffer.from('corrupt') : samples.encode(sineReading(from + k, { devices: 7, label: Math.sin, extra: [1, 0] })) })) });
      }
      await producer.disconnect();
      const server = processes.spawn('ps');
      processes.spawn('worker');
      processes.spawn('worker');
      const topics = topicsOf('restart');
      const committed = async () => (await admin.fetchOffsets({ groupId: topics.workerGroup, topics: ['restart.in'] }))[0]?.partitions.reduce((n, p) => n + Math.max(0, Number(p.offset)), 0) ?? 0;
      await waitFor('the workers to commit 2,000 records', async () => (await committed()) >= 2_000, 120_000, 200).catch((error: Error) => {
        throw new Error(`${error.message}\n${processes.report()}`);
      });

      const pid = Number(readFileSync(join(dataDir, 'node1', 'pid'), 'utf8'));
      const before = await committed();
      process.kill(pid, 'SIGKILL');
      processes.note(`broker SIGKILLed at ${before} records committed`);
      await new Promise((resolve) => setTimeout(resolve, outageMs));
      await start();
      processes.note('broker back');

      await waitUntilAccounted(kafka, admin, 'restart', 'restart.in', Math.max(240_000, total * 3)).catch((error: Error) => {
        throw new Error(`${error.message}\n${processes.report()}`);
      });
      expect(processes.exitedOnTheirOwn(asked), processes.report()).toEqual([]);
      const everyone = [server, ...processes.workers];
      await Promise.all(everyone.map((child) => processes.ready(child)));
      for (const child of everyone) {
        asked.add(child);
        child.process.kill('SIGTERM');
      }
      expect(await Promise.all(everyone.map((child) => child.exited))).toEqual(everyone.map(() => 0));

      const report = await auditNamespace({ kafka, namespace: 'restart', inputTopic: 'restart.in' });
      console.error(`[broker restart]\n${processes.events.join('\n')}\n${formatAudit(report)}`);
      recordChaosRun({ scenario: `broker kill -9, ${outageMs / 1000} s down`, records: total, joins: 2, leaves: 0, kills: 0, serverKills: 0, outages: 1, seconds: Math.round((Date.now() - startedAt) / 1000) }, report);
      expect(report.problems).toEqual([]);
      expect(report.partitions.filter((p) => p.shard === 0).reduce((n, p) => n + p.records, 0)).toBe(total);
    } finally {
      processes.killAll();
      await admin.disconnect().catch(() => {});
      await runInfraScript('stop', ['--clean', '--data-dir', dataDir]);
    }
  }, Math.max(600_000, Number(process.env.STREAMGRAD_CHAOS_RECORDS ?? 0) * 8));
});
