import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { Kafka } from 'kafkajs';
import mqtt from 'mqtt';
import { parseExperiment } from '../../pipeline/common/config.js';
import { mqttPayload, seededRandom, simulatedReading, simulatorMqttMapping } from '../../pipeline/commands/simulator.js';
import { writeExperimentFile } from '../support/snapshots.js';
import { mqttClient, startMqttBroker, type TestMqttBroker } from '../support/mqtt.js';
import { coresSince, cpuSnapshot, formatCores, type CpuSnapshot } from './machineCpu.js';
import { median } from './stats.js';
import { deleteTopics } from './pipelineRate.js';

/** What {@link measureIngestRate} measured: messages/s, medians over the runs. */
export interface IngestRates {
  /** MQTT QoS 1 messages/s through `streamgrad ingest mqtt` into Kafka, from its connection to the last Kafka ack. */
  readonly ingestRate: number;
  /** The same backlog drained by a no-op MQTT.js subscriber that acknowledges at once: the MQTT side's own limit. */
  readonly mqttDrainRate: number;
  readonly ingestMessages: number;
  readonly ingestRuns: { ingest: number[]; drain: number[] };
}

const cli = process.env.STREAMGRAD_CLI ?? fileURLToPath(new URL('../../dist/pipeline/cli.js', import.meta.url));

/** Publishes `count` simulated readings, QoS 1, as devices do (`simulate --mqtt`), into the broker's queue for a session. */
async function publishBacklog(broker: TestMqttBroker, topicOf: (device: string) => string, count: number): Promise<void> {
  const device = await mqttClient(broker.url);
  const random = seededRandom(3);
  const options = { devices: 200, ratePerSecond: 1, seed: 3 };
  for (let from = 0; from < count; from += 5_000) {
    const payloads = Array.from({ length: Math.min(5_000, count - from) }, (_, k) => simulatedReading((from + k) % 200, 1_790_000_000_000 + from + k, random, options, 0));
    await Promise.all(payloads.map((sample) => device.publishAsync(topicOf(sample.deviceId), mqttPayload(sample), { qos: 1 })));
  }
  await device.endAsync();
}

/**
 * Runs the bridge (the compiled CLI, its own process) until it has logged `marker` and `until` holds; returns the
 * seconds from the marker: its MQTT connection (a resumed session's backlog flows from then on), or its subscription.
 */
async function runBridge(file: string, brokers: readonly string[], marker: 'connected to' | 'subscribed to', until: () => Promise<boolean>): Promise<{ seconds: number; cores: ReturnType<typeof coresSince> }> {
  // STREAMGRAD_PROFILE_DIR: a CPU profile of each bridge process there (see `npm run bench:profile` for the workers').
  const profile = process.env.STREAMGRAD_PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.STREAMGRAD_PROFILE_DIR}`] : [];
  const child = spawn(process.execPath, [...profile, cli, 'ingest', 'mqtt', '--config', file], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, KAFKA_BROKERS: brokers.join(',') } });
  let connectedAt = 0;
  let cpuAtConnection: CpuSnapshot = new Map();
  let output = '';
  child.stderr.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    if (!connectedAt && output.includes(marker)) {
      connectedAt = performance.now();
      cpuAtConnection = cpuSnapshot();
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  try {
    const deadline = Date.now() + 600_000;
    while (!(connectedAt && (await until()))) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the ingest bridge stopped or stalled:\n${output.slice(-2_000)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const seconds = (performance.now() - connectedAt) / 1_000;
    return { seconds, cores: coresSince(cpuAtConnection, seconds) };
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

/** Drains `count` queued messages of session `clientId` with a subscriber that does nothing; returns the seconds. */
async function drainNoOp(broker: TestMqttBroker, clientId: string, filter: string, count: number, subscribeOnly = false): Promise<number> {
  let received = 0;
  let startedAt = 0;
  // The handler is in place before the connection: a resumed session's messages come right after CONNACK.
  const client = mqtt.connect(broker.url, { protocolVersion: 5, reconnectPeriod: 0, clientId, clean: false, properties: { sessionExpiryInterval: 3_600, receiveMaximum: 20_000 } });
  const done = new Promise<void>((resolve) =>
    client.on('message', () => {
      if (received++ === 0) startedAt = performance.now();
      if (received >= count) resolve();
    }),
  );
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  await client.subscribeAsync(filter, { qos: 1 });
  if (!subscribeOnly) await done;
  const seconds = (performance.now() - startedAt) / 1_000;
  await client.endAsync();
  return seconds;
}

/**
 * `ingestRate`: a backlog of `count` QoS 1 messages (simulated readings as JSON) waits in Mosquitto for the bridge's
 * persistent session; the bridge then drains it into Kafka, each message acknowledged after Kafka's acknowledgement.
 * Mosquitto and the bridge share the machine's cores with the Kafka broker; the publisher has finished before the
 * clock starts. `mqttDrainRate` is the same backlog drained by a no-op subscriber, in the same run.
 */
export async function measureIngestRate(kafka: Kafka, brokers: readonly string[], options: { quick: boolean; log: (line: string) => void }): Promise<IngestRates> {
  const count = options.quick ? 100_000 : 300_000;
  const runs = options.quick ? 1 : 3;
  const broker = await startMqttBroker();
  const ingest: number[] = [];
  const drain: number[] = [];
  const topics: string[] = [];
  try {
    for (let run = 0; run < runs; run++) {
      const id = randomUUID().slice(0, 8);
      const config = parseExperiment({
        namespace: `bench-ingest-${id}`,
        inputTopic: `bench-ingest-${id}.telemetry`,
        inputPartitions: 6,
        brokers,
        model: { kind: 'linear', features: 16, shards: 1 },
        ingest: { mqtt: { ...simulatorMqttMapping(broker.url, `bench-${id}/{device}/telemetry`), clientId: `bench-bridge-${id}` } },
      });
      topics.push(config.inputTopic, `${config.namespace}.dlq`);
      const file = writeExperimentFile(config);
      const admin = kafka.admin();
      await admin.connect();
      const written = async () => (await admin.fetchTopicOffsets(config.inputTopic).catch(() => [])).reduce((sum, p) => sum + Number(p.high), 0) + (await admin.fetchTopicOffsets(`${config.namespace}.dlq`).catch(() => [])).reduce((sum, p) => sum + Number(p.high), 0);
      // The session first, so that the broker queues the backlog for it.
      await runBridge(file, brokers, 'subscribed to', async () => true);
      options.log(`  publishing ${count.toLocaleString('en-US')} QoS 1 messages for the bridge's session …`);
      await publishBacklog(broker, (device) => `bench-${id}/${device}/telemetry`, count);
      const { seconds, cores } = await runBridge(file, brokers, 'connected to', async () => (await written()) >= count);
      ingest.push(count / seconds);
      options.log(`  cores used while the bridge drained: ${formatCores(cores)}`);
      await admin.disconnect();
      await drainNoOp(broker, `bench-noop-${id}`, `noop-${id}/+/telemetry`, 0, true);
      await publishBacklog(broker, (device) => `noop-${id}/${device}/telemetry`, count);
      drain.push(count / (await drainNoOp(broker, `bench-noop-${id}`, `noop-${id}/+/telemetry`, count)));
      options.log(`  run ${run + 1}/${runs}: bridge ${Math.round(ingest.at(-1)!)} messages/s into Kafka; no-op MQTT subscriber ${Math.round(drain.at(-1)!)} messages/s`);
    }
  } finally {
    await broker.stop();
    await deleteTopics(kafka, topics).catch(() => undefined);
  }
  return { ingestRate: median(ingest), mqttDrainRate: median(drain), ingestMessages: count, ingestRuns: { ingest, drain } };
}
