import type { Kafka } from 'kafkajs';
import mqtt, { type IClientOptions } from 'mqtt';
import { codecFor, type CodecOptions } from '../../schemas/codec.js';
import type { TrainingSample } from '../../schemas/types.js';
import { partitionDiscoveryMs } from '../common/kafkaClient.js';

/** Options of the IoT telemetry simulator. Times in ms, rates in samples/s. */
export interface SimulatorOptions {
  readonly devices: number;
  readonly ratePerSecond: number;
  /** Stop after this many samples (default: never). */
  readonly count?: number;
  readonly seed: number;
  /** A simulated day lasts this long, so daily cycles show in a short demo. Default 60,000. */
  readonly dayMs?: number;
  /** From this many ms after start, the label function changes (concept drift). */
  readonly driftAfterMs?: number;
  /** Share of readings where one sensor drops out (reports NaN): they end in the dead-letter topic. Default 0.001. */
  readonly dropoutRate?: number;
  /**
   * `unit`: every feature about unit size. `skewed`: feature i multiplied by {@link skewedFeatureScales}[i], from 0.01
   * to 1,000, as raw sensors report on scales of their own; the label is the same function of the underlying
   * readings. Default unit.
   */
  readonly featureScales?: 'unit' | 'skewed';
}

export const simulatedFeatureCount = 16;

/** A small deterministic generator (mulberry32), so a seed gives the same stream everywhere. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * The ground truth the simulator labels readings with: a fixed linear function
 * of the 16 features, which changes once at the drift time. Tests and demos
 * compare the learned model with it.
 */
export function trueWeights(drifted: boolean): { w: number[]; b: number } {
  const w = Array.from({ length: simulatedFeatureCount }, (_, i) => Math.round(Math.sin(i + 1) * 100) / 100);
  return drifted ? { w: w.map((v, i) => (i % 2 === 0 ? -v : v)), b: -0.5 } : { w, b: 0.5 };
}

/** The factors of the `skewed` feature scales: 0.01 for the first feature up to 1,000 for the last, evenly in log scale. */
export const skewedFeatureScales: readonly number[] = Array.from({ length: simulatedFeatureCount }, (_, i) => 10 ** (-2 + (5 * i) / (simulatedFeatureCount - 1)));

/**
 * One reading of one device at time `t`: temperature, humidity and pressure
 * on a daily cycle with a per-device offset, vibration and power with noise,
 * and their harmonics, 16 features in all, scaled to about unit size.
 */
export function simulatedReading(device: number, t: number, random: () => number, options: SimulatorOptions, startedAt: number): TrainingSample {
  const day = (2 * Math.PI * (t % (options.dayMs ?? 60_000))) / (options.dayMs ?? 60_000);
  const offset = ((device * 7919) % 100) / 100 - 0.5;
  const noise = () => (random() - 0.5) * 0.2;
  const temperature = Math.sin(day) + offset + noise();
  const humidity = Math.cos(day) - offset / 2 + noise();
  const pressure = 0.5 * Math.sin(2 * day + offset) + noise();
  const vibration = random() * 2 - 1;
  const power = 0.3 * temperature + 0.2 * vibration + noise();
  const base = [temperature, humidity, pressure, vibration, power];
  const features = [...base, ...base.map((v) => v * v - 0.5), ...base.map((v, i) => v * base[(i + 1) % base.length]!), offset].map(Math.fround);
  const truth = trueWeights(options.driftAfterMs !== undefined && t - startedAt >= options.driftAfterMs);
  const label = features.reduce((sum, x, i) => sum + x * truth.w[i]!, truth.b) + noise() * 0.1;
  if (options.featureScales === 'skewed') features.forEach((x, i) => (features[i] = Math.fround(x * skewedFeatureScales[i]!)));
  if (random() < (options.dropoutRate ?? 0.001)) features[Math.floor(random() * features.length)] = Number.NaN;
  return { deviceId: `device-${String(device).padStart(4, '0')}`, eventTime: t, features, label: Math.fround(label), labels: [], weight: 1, attributes: { site: `site-${device % 5}` } };
}

/** A tick that fell behind (a slow broker) catches up by at most this many records. */
const maxRecordsPerTick = 20_000;
/** A large tick must stay under the broker's message size limit. */
const maxRecordsPerRequest = 2_000;

/** A running simulator. */
export interface Simulator {
  /** Samples sent so far. */
  sent(): number;
  stop(): void;
  readonly done: Promise<void>;
}

/** Where simulated samples go: Kafka, or an MQTT broker. */
interface SampleSink {
  connect(): Promise<void>;
  send(samples: readonly TrainingSample[]): Promise<void>;
  disconnect(): Promise<void>;
}

/** Runs the simulation into `sink` at `ratePerSecond`, in 50 ms ticks, until stopped or `count` samples are sent. */
function simulate(sink: SampleSink, options: SimulatorOptions): Simulator {
  const random = seededRandom(options.seed);
  let sent = 0;
  let stopped = false;
  const tickMs = 50;
  let startedAt = 0;
  const send = async (batch: number) => {
    const now = Date.now();
    await sink.send(Array.from({ length: batch }, (_, k) => simulatedReading((sent + k) % options.devices, now, random, options, startedAt)));
    sent += batch;
  };
  const run = async () => {
    await sink.connect();
    startedAt = Date.now();
    try {
      while (!stopped && (options.count === undefined || sent < options.count)) {
        const due = Math.floor(((Date.now() - startedAt) / 1000) * options.ratePerSecond) - sent;
        const batch = Math.min(Math.max(due, 0), options.count === undefined ? due : options.count - sent, maxRecordsPerTick);
        if (batch > 0) await send(batch);
        await new Promise((resolve) => setTimeout(resolve, tickMs));
      }
    } finally {
      await sink.disconnect();
    }
  };
  const done = run();
  return { sent: () => sent, stop: () => (stopped = true), done };
}

/**
 * Produces simulated IoT telemetry (`TrainingSample`s keyed by device id, in
 * the input's framing: the experiment's `input`, raw Avro by default) to `topic`
 * at `ratePerSecond`, until stopped or `count` samples are sent.
 */
export function startSimulator(kafka: Kafka, topic: string, options: SimulatorOptions, framing: Pick<CodecOptions, 'framing' | 'schemaId'> = {}): Simulator {
  const codec = codecFor('TrainingSample', { framing: framing.framing, schemaId: framing.schemaId });
  // Partitions added by `streamgrad scale` get records within seconds.
  const producer = kafka.producer({ idempotent: true, metadataMaxAge: partitionDiscoveryMs });
  return simulate(
    {
      connect: () => producer.connect(),
      send: async (samples) => {
        const messages = samples.map((sample) => ({ key: sample.deviceId, value: codec.encode(sample) }));
        for (let from = 0; from < messages.length; from += maxRecordsPerRequest) await producer.send({ topic, messages: messages.slice(from, from + maxRecordsPerRequest) });
      },
      disconnect: () => producer.disconnect(),
    },
    options,
  );
}

/** The MQTT topic of a device's telemetry in `simulate --mqtt`: `{device}` stands for the device id. */
export const defaultMqttTopicPattern = 'plant/{device}/telemetry';

/**
 * A simulated reading as a device would publish it over MQTT: JSON with the event time in ms (`ts`), the 16
 * readings (`null` for a sensor that dropped out: JSON has no NaN), the label and the site. `examples/iot-mqtt.yaml`
 * maps it back to the same `TrainingSample`.
 */
export function mqttPayload(sample: TrainingSample): string {
  return JSON.stringify({ ts: sample.eventTime, readings: sample.features.map((x) => (Number.isFinite(x) ? x : null)), label: sample.label, site: sample.attributes.site });
}

/** The `ingest.mqtt` mapping of what `simulate --mqtt` publishes (as in `examples/iot-mqtt.yaml`). */
export function simulatorMqttMapping(url: string, topicPattern = defaultMqttTopicPattern) {
  return { url, topics: [topicPattern.replace('{device}', '+')], qos: 1 as const, deviceId: { topicLevel: topicPattern.split('/').indexOf('{device}') }, features: ['readings'], label: 'label', eventTime: { field: 'ts', unit: 'ms' as const }, attributes: ['site'] };
}

/** Publishes simulated telemetry as JSON over MQTT (QoS 1), one topic per device (`topicPattern`). */
export function startMqttSimulator(url: string, connectOptions: IClientOptions, topicPattern: string, options: SimulatorOptions): Simulator {
  const client = mqtt.connect(url, { ...connectOptions, manualConnect: true });
  return simulate(
    {
      connect: async () => {
        const connected = new Promise<void>((resolve, reject) => {
          client.once('connect', () => resolve());
          client.once('error', reject);
        });
        client.connect();
        await connected;
      },
      send: async (samples) => {
        await Promise.all(samples.map((sample) => client.publishAsync(topicPattern.replace('{device}', sample.deviceId), mqttPayload(sample), { qos: 1 })));
      },
      disconnect: () => client.endAsync(),
    },
    options,
  );
}
