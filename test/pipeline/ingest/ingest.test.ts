import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { codecFor } from '../../../schemas/codec.js';
import { topicsOf } from '../../../pipeline/common/topics.js';
import { spawnTs, cliPath, runCli, waitFor } from '../../support/childProcess.js';
import { cliEnv } from '../../support/cliRun.js';
import { kafkaTest, type KafkaFixture } from '../../support/kafka.js';
import { mqttClient, startMqttBroker, type TestMqttBroker } from '../../support/mqtt.js';
import { writeExperimentFile } from '../../support/snapshots.js';

const samples = codecFor('TrainingSample');
const deadLetters = codecFor('DeadLetter');
const valueOf = <T>(result: { ok: true; value: T } | { ok: false; error: Error }): T => {
  if (!result.ok) throw result.error;
  return result.value;
};

function experiment(url: string, mqtt: object = {}) {
  const id = randomUUID().slice(0, 8);
  return {
    namespace: `ingest-${id}`,
    inputTopic: `ingest-${id}.telemetry`,
    inputPartitions: 3,
    model: { kind: 'linear', features: 2, shards: 1 },
    ingest: { mqtt: { url, topics: [`t-${id}/+/telemetry`], clientId: `bridge-${id}`, deviceId: { topicLevel: 1 }, features: ['readings'], label: 'y', eventTime: { field: 'ts' }, attributes: ['seq'], ...mqtt } },
  };
}
type Experiment = ReturnType<typeof experiment>;
const topicOf = (config: Experiment, device: string) => config.ingest.mqtt.topics[0]!.replace('+', device);

/** The sequence numbers of the samples in the input topic, and the dead letters' reasons. */
async function written(kafka: KafkaFixture, config: Experiment) {
  const input = (await kafka.readCommittedValues(config.inputTopic)).map((value) => valueOf(samples.decode(value)));
  const dead = (await kafka.readCommittedValues(topicsOf(config.namespace).deadLetters)).map((value) => valueOf(deadLetters.decode(value)));
  return { input, dead, seqs: input.map((sample) => Number(sample.attributes.seq)) };
}

describe('streamgrad ingest mqtt', () => {
  let broker: TestMqttBroker;
  beforeAll(async () => {
    broker = await startMqttBroker();
  });
  afterAll(async () => {
    await broker?.stop();
  });

  kafkaTest('maps every message to a sample keyed by its device, sends the bad ones to <ns>.dlq with their reason and payload, and goes on', async ({ kafka }) => {
    const config = experiment(broker.url);
    const file = writeExperimentFile(config);
    const bridge = spawnTs(cliPath, ['ingest', 'mqtt', '--config', file, '--metrics-port', '0'], { env: cliEnv() });
    try {
      await waitFor('the bridge to start', () => bridge.errors.some((line) => line.includes('Prometheus metrics at')), 60_000);
      const device = await mqttClient(broker.url);
      const good = 3_000;
      await Promise.all(Array.from({ length: good }, (_, i) => device.publishAsync(topicOf(config, `d${i % 7}`), JSON.stringify({ readings: [i, -i], y: i / 2, ts: 1_000 + i, seq: i }), { qos: 1 })));
      const bad = [['not json', '{"readings": ['], ['no label', JSON.stringify({ readings: [1, 2], seq: -1 })], ['a string', JSON.stringify({ readings: ['1', 2], y: 1 })], ['a null', JSON.stringify({ readings: [null, 2], y: 1 })]];
      for (const [, payload] of bad) await device.publishAsync(topicOf(config, 'bad'), payload!, { qos: 1 });
      await device.publishAsync(topicOf(config, 'd1'), JSON.stringify({ readings: [1, 1], y: 1, ts: 1, seq: good }), { qos: 1 });
      await device.endAsync();

      const endpoint = /Prometheus metrics at (http:\S+)/.exec(bridge.errors.join('\n'))![1]!;
      await waitFor('every message written', async () => /^streamgrad_ingest_samples_total\{[^}]*\} 3001$/m.test(await (await fetch(endpoint)).text()), 60_000);
      const metrics = await (await fetch(endpoint)).text();
      expect(metrics).toMatch(/^streamgrad_ingest_messages_total\{[^}]*\} 3005$/m);
      expect(metrics).toMatch(/^streamgrad_ingest_dead_letters_total\{reason="NON_FINITE",[^}]*\} 1$/m);
      expect(metrics).toMatch(/^streamgrad_ingest_ack_lag_seconds_count\{[^}]*\} 3005$/m);

      const { input, dead, seqs } = await written(kafka, config);
      expect(seqs.sort((a, b) => a - b)).toEqual(Array.from({ length: good + 1 }, (_, i) => i));
      const sample = input.find((one) => one.attributes.seq === '10')!;
      expect(sample).toMatchObject({ deviceId: 'd3', features: [10, -10], label: 5, eventTime: 1_010, weight: 1 });
      expect(dead.map((letter) => letter.errorCode).sort()).toEqual(['MISSING_FIELD', 'NON_FINITE', 'PAYLOAD', 'WRONG_TYPE']);
      expect(dead.map((letter) => letter.value!.toString()).sort()).toEqual(bad.map(([, payload]) => payload).sort());
      expect(dead.every((letter) => letter.topic === `mqtt:${topicOf(config, 'bad')}` && letter.key?.toString() === 'bad')).toBe(true);
    } finally {
      bridge.process.kill('SIGTERM');
    }
    expect(await bridge.exited).toBe(0);
  }, 120_000);

  kafkaTest('loses nothing when the bridge is SIGKILLed twice while draining a backlog of QoS 1 messages; duplicates stay under maxUnacked per kill', async ({ kafka }) => {
    const maxUnacked = 2_000;
    const config = experiment(broker.url, { maxUnacked, batchMaxMessages: 500 });
    const file = writeExperimentFile(config);
    const start = () => spawnTs(cliPath, ['ingest', 'mqtt', '--config', file], { env: cliEnv(), quiet: true });
    const subscribed = (child: ReturnType<typeof start>) => waitFor('the bridge to subscribe', () => child.errors.some((line) => line.includes('subscribed to')), 60_000);
    // The bridge's persistent session exists before the devices publish: the broker keeps the backlog for it.
    let bridge = start();
    await subscribed(bridge);
    bridge.process.kill('SIGKILL');
    await bridge.exited;
    const total = 40_000;
    const device = await mqttClient(broker.url);
    for (let from = 0; from < total; from += 2_000) {
      await Promise.all(Array.from({ length: 2_000 }, (_, k) => device.publishAsync(topicOf(config, `d${(from + k) % 11}`), JSON.stringify({ readings: [1, 2], y: 3, ts: from + k, seq: from + k }), { qos: 1 })));
    }
    await device.endAsync();

    await kafka.admin.connect();
    const inTopic = async () => (await kafka.admin.fetchTopicOffsets(config.inputTopic)).reduce((sum, p) => sum + Number(p.high), 0);
    for (const killAt of [8_000, 20_000]) {
      bridge = start();
      await waitFor(`${killAt} records in Kafka`, async () => (await inTopic()) >= killAt, 90_000, 20);
      bridge.process.kill('SIGKILL');
      await bridge.exited;
    }
    bridge = start();
    try {
      await waitFor('every sequence number in Kafka', async () => (await inTopic()) >= total, 120_000, 200);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const { seqs } = await written(kafka, config);
      const distinct = new Set(seqs);
      expect(distinct.size).toBe(total);
      const duplicates = seqs.length - distinct.size;
      console.error(`[ingest test] ${total} messages, 2 SIGKILLs: ${seqs.length} records, ${duplicates} duplicates`);
      expect(duplicates).toBeLessThanOrEqual(2 * maxUnacked);
    } finally {
      bridge.process.kill('SIGTERM');
    }
    expect(await bridge.exited).toBe(0);
  }, 300_000);

  kafkaTest('connects with TLS and a password; a wrong password, an untrusted broker and no broker each end with one line, exit 2', async () => {
    const secure = await startMqttBroker({ secure: true });
    try {
      const tls = { caFile: `${secure.secrets}/ca.pem` };
      const password = { file: `${secure.secrets}/bridge.password` };
      const run = async (mqtt: object) => {
        const child = spawnTs(cliPath, ['ingest', 'mqtt', '--config', writeExperimentFile(experiment(secure.url, mqtt))], { env: cliEnv(), quiet: true });
        return child;
      };
      const good = await run({ username: 'bridge', password, tls });
      await waitFor('the bridge to connect over TLS', () => good.errors.some((line) => line.includes('subscribed to')), 60_000);
      good.process.kill('SIGTERM');
      expect(await good.exited).toBe(0);

      for (const [mqtt, reason] of [
        [{ username: 'bridge', password: { env: 'WRONG_PASSWORD' }, tls }, /refused user 'bridge'/],
        [{ username: 'bridge', password }, /certificate is not trusted.*tls\.caFile/],
        [{ url: 'mqtt://127.0.0.1:1' }, /connection refused/],
      ] as const) {
        const { code, stderr } = await runCli(['ingest', 'mqtt', '--config', writeExperimentFile(experiment(secure.url, mqtt))], { ...cliEnv(), WRONG_PASSWORD: 'not-it' });
        expect(code).toBe(2);
        expect(stderr, stderr.join('\n')).toHaveLength(1);
        expect(stderr[0]).toMatch(/cannot connect to the MQTT broker at \S+ \(config\.ingest\.mqtt\.url\)/);
        expect(stderr[0]).toMatch(reason);
        expect(stderr[0]).not.toContain('not-it');
      }
    } finally {
      await secure.stop();
    }
  }, 180_000);
});
