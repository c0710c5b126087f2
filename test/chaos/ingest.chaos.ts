import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { readTopic } from '../../pipeline/common/readTopic.js';
import { codecFor } from '../../schemas/codec.js';
import { ownBrokerPorts, runInfraScript, startOwnKafka } from '../support/broker.js';
import { cliPath, spawnTs, waitFor, type TsChild } from '../support/childProcess.js';
import { mqttClient, startMqttBroker } from '../support/mqtt.js';
import { appendChaosRun, ingestScenario } from '../support/processes.js';
import { writeExperimentFile } from '../support/snapshots.js';

// npm run chaos sets the size and the outage.
const total = Number(process.env.STREAMGRAD_CHAOS_RECORDS ?? 150_000);
const outageMs = Number(process.env.STREAMGRAD_TEST_OUTAGE_MS ?? 20_000);
const maxUnacked = 5_000;

describe('the MQTT ingest bridge under chaos', () => {
  it(`${ingestScenario(outageMs / 1000)}: every message of a ${total.toLocaleString('en-US')}-message backlog reaches Kafka; re-writes stay under maxUnacked per crash; the bridge rides out the outage`, async () => {
    const startedAt = Date.now();
    const dataDir = mkdtempSync(join(tmpdir(), 'streamgrad-ingest-chaos-'));
    const startKafka = () => startOwnKafka(['--port', String(ownBrokerPorts.chaosIngest), '--data-dir', dataDir]);
    const brokers = await startKafka();
    const mqttBroker = await startMqttBroker();
    const kafka = new Kafka({ clientId: 'ingest-chaos', brokers, logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    const id = randomUUID().slice(0, 8);
    const inputTopic = `ingest-chaos-${id}.telemetry`;
    const file = writeExperimentFile({
      namespace: `ingest-chaos-${id}`,
      inputTopic,
      inputPartitions: 3,
      model: { kind: 'linear', features: 2, shards: 1 },
      ingest: { mqtt: { url: mqttBroker.url, topics: [`c-${id}/+/telemetry`], clientId: `bridge-${id}`, deviceId: { topicLevel: 1 }, features: ['readings'], label: 'y', eventTime: { field: 'ts' }, attributes: ['seq'], maxUnacked } },
    });
    const bridges: TsChild[] = [];
    const start = () => {
      const child = spawnTs(cliPath, ['ingest', 'mqtt', '--config', file], { env: { KAFKA_BROKERS: brokers.join(',') }, quiet: true });
      bridges.push(child);
      return child;
    };
    const tail = (child: TsChild) => child.errors.slice(-15).join('\n');
    const events: string[] = [];
    try {
      // The bridge's persistent session first: the MQTT broker keeps the backlog for it.
      let bridge = start();
      await waitFor('the bridge to subscribe', () => bridge.errors.some((line) => line.includes('subscribed to')), 120_000);
      bridge.process.kill('SIGKILL');
      await bridge.exited;
      const device = await mqttClient(mqttBroker.url);
      for (let from = 0; from < total; from += 5_000) {
        await Promise.all(Array.from({ length: Math.min(5_000, total - from) }, (_, k) => device.publishAsync(`c-${id}/d${(from + k) % 101}/telemetry`, JSON.stringify({ readings: [1, 2], y: 3, ts: from + k, seq: from + k }), { qos: 1 })));
      }
      await device.endAsync();
      events.push(`${total} QoS 1 messages queued for the bridge's session`);

      await admin.connect();
      const inTopic = async () => (await admin.fetchTopicOffsets(inputTopic).catch(() => [])).reduce((sum, p) => sum + Number(p.high), 0);
      const reach = (share: number) => waitFor(`${Math.round(share * total)} records in Kafka`, async () => (await inTopic()) >= share * total, 300_000, 10);

      bridge = start();
      await reach(0.15);
      bridge.process.kill('SIGKILL');
      await bridge.exited;
      events.push(`bridge SIGKILLed at ${await inTopic()} records`);

      bridge = start();
      await reach(0.35);
      const pid = Number(readFileSync(join(dataDir, 'node1', 'pid'), 'utf8'));
      const atKill = await inTopic();
      process.kill(pid, 'SIGKILL');
      events.push(`Kafka broker SIGKILLed at ${atKill} records (bridge running)`);
      await new Promise((resolve) => setTimeout(resolve, outageMs));
      expect(bridge.process.exitCode, `the bridge exited while Kafka was away:\n${tail(bridge)}`).toBeNull();
      await startKafka();
      events.push(`Kafka broker back after ${outageMs / 1000} s`);

      await reach(0.7);
      expect(bridge.process.exitCode, tail(bridge)).toBeNull();
      bridge.process.kill('SIGKILL');
      await bridge.exited;
      events.push(`bridge SIGKILLed at ${await inTopic()} records`);

      bridge = start();
      await reach(1);
      // Whatever a crash left written twice is in the topic by now; a moment for the last acknowledged requests.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      bridge.process.kill('SIGTERM');
      expect(await bridge.exited, tail(bridge)).toBe(0);

      const samples = codecFor('TrainingSample');
      const seen = new Uint8Array(total);
      let records = 0;
      await readTopic(kafka, inputTopic, (record) => {
        const sample = samples.decode(record.value!);
        if (!sample.ok) throw sample.error;
        const seq = Number(sample.value.attributes.seq);
        if (seen[seq]! < 255) seen[seq]! += 1;
        records++;
      });
      const lost = seen.reduce((n, times) => n + (times === 0 ? 1 : 0), 0);
      const duplicates = records - (total - lost);
      events.push(`${records} records: ${total - lost} distinct of ${total}, ${lost} lost, ${duplicates} written again; bridge restarts ${bridges.length - 1}, Kafka retries logged ${bridges.flatMap((b) => b.errors).filter((line) => line.includes('failed') && line.includes('trying again')).length}`);
      console.error(`[ingest chaos]\n${events.join('\n')}`);
      const problems = [...(lost > 0 ? [`${lost} message(s) lost`] : []), ...(duplicates > 3 * maxUnacked ? [`${duplicates} written again, above 3 × maxUnacked`] : [])];
      appendChaosRun({ scenario: ingestScenario(outageMs / 1000), records: total, joins: 0, leaves: 0, kills: 2, serverKills: 0, outages: 1, seconds: Math.round((Date.now() - startedAt) / 1000), lost, twice: 0, duplicates, ok: problems.length === 0, problems, at: new Date().toISOString() });
      expect(lost).toBe(0);
      // Each SIGKILL re-sends at most what was read and not acknowledged (maxUnacked); so may the outage, if Kafka
      // wrote a request whose acknowledgement it never sent.
      expect(duplicates).toBeLessThanOrEqual(3 * maxUnacked);
    } finally {
      for (const child of bridges) child.process.kill('SIGKILL');
      await admin.disconnect().catch(() => undefined);
      await mqttBroker.stop();
      await runInfraScript('stop', ['--clean', '--data-dir', dataDir]);
    }
  }, Math.max(900_000, total * 10));
});
