import type { Kafka, Message, Producer } from 'kafkajs';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient, type Packet } from 'mqtt';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { codecFor, type AvroCodec } from '../../schemas/codec.js';
import type { TrainingSample } from '../../schemas/types.js';
import { deadLetterFor } from '../../schemas/deadLetter.js';
import type { ExperimentConfig } from '../common/config.js';
import { cachedKeyPartitioner, readPem } from '../common/kafkaClient.js';
import { MqttUnreachableError } from '../common/errors.js';
import { logFnOf } from '../common/log.js';
import { percentile } from '../common/percentile.js';
import { publishReport, type IngestReport } from '../common/reports.js';
import { readSecret } from '../common/secrets.js';
import { ensureExperimentTopics, topicsOf } from '../common/topics.js';
import { MqttMapping, type MqttIngestConfig } from './mapping.js';

/** The bridge's figures, as `/metrics` and the progress line show them. */
export interface IngestFigures {
  readonly messagesIn: number;
  readonly samplesOut: number;
  readonly deadLetters: number;
  /** Messages read and not yet acknowledged by Kafka (QoS 1 ones not yet acknowledged to the MQTT broker either). */
  readonly pending: number;
  readonly mqttConnected: boolean;
  readonly reconnects: number;
}

interface Pending {
  readonly topic: string;
  readonly message: Message;
  readonly dead: boolean;
  readonly receivedAt: number;
  /** The QoS 1 packet id to acknowledge once Kafka holds the record, and the connection it came on. */
  readonly messageId: number | undefined;
  readonly connection: number;
}

/** Reconnect delays to the MQTT broker: from 500 ms, doubling, at most 30 s. */
const firstReconnectMs = 500;
const maxReconnectMs = 30_000;
/** The bridge writes its figures to `<ns>.reports` this often, keeping at most this many ack lags between reports. */
const reportEveryMs = 2_000;
const maxLagSamples = 20_000;

/** The bridge's metrics; the message count and the pending gauge are read from `figures` when scraped, not kept per message. */
function ingestMetrics(namespace: string, figures: () => IngestFigures) {
  const registry = new Registry();
  let messagesCounted = 0;
  registry.setDefaultLabels({ namespace, role: 'ingest' });
  return {
    registry,
    messages: new Counter({
      name: 'streamgrad_ingest_messages_total',
      help: 'MQTT messages received',
      registers: [registry],
      collect() {
        const { messagesIn } = figures();
        this.inc(messagesIn - messagesCounted);
        messagesCounted = messagesIn;
      },
    }),
    samples: new Counter({ name: 'streamgrad_ingest_samples_total', help: 'TrainingSamples written to the input topic (Kafka acknowledged)', registers: [registry] }),
    deadLetters: new Counter({ name: 'streamgrad_ingest_dead_letters_total', help: 'Messages that did not map, written to <ns>.dlq, by reason', labelNames: ['reason'], registers: [registry] }),
    lag: new Histogram({ name: 'streamgrad_ingest_ack_lag_seconds', help: 'From MQTT arrival to the Kafka acknowledgement of its record', buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10], registers: [registry] }),
    pending: new Gauge({
      name: 'streamgrad_ingest_pending',
      help: 'Messages read and not yet acknowledged by Kafka',
      registers: [registry],
      collect() {
        this.set(figures().pending);
      },
    }),
    connected: new Gauge({ name: 'streamgrad_ingest_mqtt_connected', help: '1 while connected to the MQTT broker', registers: [registry] }),
    reconnects: new Counter({ name: 'streamgrad_ingest_mqtt_reconnects_total', help: 'Reconnections to the MQTT broker', registers: [registry] }),
    dropped: new Counter({ name: 'streamgrad_ingest_qos0_dropped_total', help: 'QoS 0 messages dropped because the bridge held maxUnacked messages already', registers: [registry] }),
    kafkaRetries: new Counter({ name: 'streamgrad_ingest_kafka_retries_total', help: 'Kafka requests of the bridge that failed and were sent again', registers: [registry] }),
  };
}

/** MQTT.js connect options for `ingest.mqtt`: a persistent MQTT 5 session, credentials and TLS read now (errors name the field). */
export function mqttOptions(settings: MqttIngestConfig, clientId: string): IClientOptions {
  const field = 'config.ingest.mqtt';
  const tls = settings.tls;
  return {
    clientId,
    protocolVersion: 5,
    // A persistent session: QoS 1 messages wait in the broker while the bridge is down, for a week.
    clean: false,
    properties: { sessionExpiryInterval: 7 * 24 * 3600, receiveMaximum: settings.maxUnacked },
    reconnectPeriod: firstReconnectMs,
    connectTimeout: 10_000,
    keepalive: 30,
    ...(settings.username === undefined ? {} : { username: settings.username }),
    ...(settings.password === undefined ? {} : { password: readSecret(settings.password, `${field}.password`, `the MQTT password of '${settings.username ?? ''}'`) }),
    ...(tls?.caFile === undefined ? {} : { ca: readPem(tls.caFile, `${field}.tls.caFile`, 'the CA certificates') }),
    ...(tls?.certFile === undefined ? {} : { cert: readPem(tls.certFile, `${field}.tls.certFile`, 'the client certificate') }),
    ...(tls?.keyFile === undefined ? {} : { key: readPem(tls.keyFile, `${field}.tls.keyFile`, 'the client key') }),
    rejectUnauthorized: true,
  };
}

/**
 * Withholds MQTT.js' own PUBACKs: it sends one as soon as a message is handed over, and handles one packet at a time,
 * waiting on its message handler, so deferring its handler would stall the connection. The bridge lets it run on and
 * acknowledges each QoS 1 message itself ({@link pubackBytes}), in arrival order, once Kafka holds its record.
 */
function withholdPubacks(client: MqttClient): void {
  const target = client as unknown as { _sendPacket: (packet: Packet, cb?: (error?: Error) => void, ...rest: unknown[]) => void };
  const original = target._sendPacket.bind(client);
  target._sendPacket = (packet, cb, ...rest) => {
    if (packet.cmd === 'puback') {
      cb?.();
      return;
    }
    original(packet, cb, ...rest);
  };
}

/**
 * The PUBACKs of `ids`, encoded back to back for one socket write: a PUBACK with reason Success and no properties is
 * its fixed header and the packet id (MQTT 5.0 §3.4.2.1 lets both be left out; 3.1.1's is the same 4 bytes).
 */
export function pubackBytes(ids: readonly number[]): Buffer {
  const bytes = Buffer.allocUnsafe(4 * ids.length);
  for (let i = 0; i < ids.length; i++) {
    bytes[4 * i] = 0x40;
    bytes[4 * i + 1] = 2;
    bytes.writeUInt16BE(ids[i]!, 4 * i + 2);
  }
  return bytes;
}

/** One line on why a connection to the MQTT broker failed, naming the setting to look at. */
function describeMqttError(error: Error & { code?: unknown }, settings: MqttIngestConfig): string {
  const code = error.code;
  // CONNACK reason codes: MQTT 5 (134, 135) and 3.1.1 (4, 5).
  if (code === 134 || code === 135 || code === 4 || code === 5) {
    const who = settings.username === undefined ? 'a client without a username (config.ingest.mqtt.username is not set)' : `user '${settings.username}' (config.ingest.mqtt.username, password)`;
    return `the broker refused ${who}: ${code === 134 || code === 4 ? 'bad username or password' : 'not authorized (a wrong password, with Mosquitto)'}`;
  }
  if (typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO/.test(code)) return `the broker's certificate is not trusted (${code}): set config.ingest.mqtt.tls.caFile to the CA that signed it`;
  if (code === 'ECONNREFUSED') return 'connection refused: is the broker running, and is the port right?';
  return error.message;
}

/** A running bridge. */
export interface IngestBridge {
  figures(): IngestFigures;
  readonly registry: Registry;
  /** Stops reading, writes what it holds to Kafka, acknowledges it, and disconnects from both brokers. */
  stop(): Promise<void>;
  /** Settles once connected to both brokers; rejects with the reason when the first connection fails. */
  readonly ready: Promise<void>;
  /** Settles when the bridge has stopped (after `stop`, or on a failure it cannot get past). */
  readonly done: Promise<void>;
}

/**
 * The MQTT → Kafka ingest bridge: subscribes to `ingest.mqtt.topics`, maps each message with the experiment's
 * mapping, and writes the samples (keyed by device id) to the input topic and the messages that do not map to
 * `<ns>.dlq`, with the idempotent producer. A QoS 1 message is acknowledged to the MQTT broker only once Kafka has
 * acknowledged its record, so a crash loses nothing: the broker sends what was not acknowledged again.
 */
export function startIngestBridge(kafka: Kafka, config: ExperimentConfig, settings: MqttIngestConfig, logger: Logger): IngestBridge {
  return new Bridge(kafka, config, settings, logger);
}

class Bridge implements IngestBridge {
  readonly registry: Registry;
  readonly ready: Promise<void>;
  readonly done: Promise<void>;
  private readonly log: (line: string) => void;
  private readonly metrics: ReturnType<typeof ingestMetrics>;
  private readonly mapping: MqttMapping;
  private readonly sampleCodec: AvroCodec<TrainingSample>;
  private readonly deadLetterCodec = codecFor('DeadLetter');
  private readonly deadLetterTopic: string;
  private readonly clientId: string;
  private readonly producer: Producer;
  private readonly client: MqttClient;
  private readonly queue: Pending[] = [];
  /** Counts the MQTT connections: a packet id is only valid on the connection it came on. */
  private connection = 0;
  private stopping = false;
  private reconnectMs = firstReconnectMs;
  private readonly counts = { messagesIn: 0, samplesOut: 0, deadLetters: 0, reconnects: 0 };
  private wake: (() => void) | undefined;
  /** Ack lags (ms) since the last report, the first {@link maxLagSamples} of them: enough for a median and a p99. */
  private lagSamples: number[] = [];

  constructor(private readonly kafka: Kafka, private readonly config: ExperimentConfig, private readonly settings: MqttIngestConfig, logger: Logger) {
    this.log = logFnOf(logger);
    this.metrics = ingestMetrics(config.namespace, () => this.figures());
    this.registry = this.metrics.registry;
    this.mapping = new MqttMapping(settings);
    this.sampleCodec = codecFor('TrainingSample', { framing: config.input.framing, schemaId: config.input.schemaId });
    this.deadLetterTopic = topicsOf(config.namespace).deadLetters;
    this.clientId = settings.clientId ?? `streamgrad-ingest-${config.namespace}`;
    this.producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: cachedKeyPartitioner });
    // `log`: MQTT.js' debug calls, several per packet, were a measurable share of the bridge's CPU.
    this.client = mqtt.connect(settings.url, { ...mqttOptions(settings, this.clientId), manualConnect: true, log: () => undefined });
    withholdPubacks(this.client);
    this.client.on('connect', (connack) => this.connected(connack.sessionPresent));
    this.client.on('close', () => this.metrics.connected.set(0));
    this.client.on('reconnect', () => this.reconnecting());
    this.client.on('message', (topic: string, payload: Buffer, packet: IPublishPacket) => this.received(topic, payload, packet));
    this.ready = this.connect();
    this.done = this.run();
  }

  figures(): IngestFigures {
    return { ...this.counts, pending: this.queue.length, mqttConnected: this.client.connected };
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.done;
  }

  /** The MQTT broker first (its errors are the likelier ones, and need no Kafka topic), then the topics and the producer. */
  private async connect(): Promise<void> {
    await this.firstConnection();
    try {
      await ensureExperimentTopics(this.kafka, this.config);
      await this.producer.connect();
    } catch (error) {
      this.client.end(true);
      throw error;
    }
  }

  private async run(): Promise<void> {
    await this.ready;
    const reports = topicsOf(this.config.namespace).reports;
    const reportTimer = setInterval(() => void publishReport(this.producer, reports, this.report()).catch((error: Error) => this.log(`could not write a report to ${reports}: ${error.message}`)), reportEveryMs);
    try {
      await this.pump();
    } finally {
      clearInterval(reportTimer);
      await publishReport(this.producer, reports, this.report()).catch(() => undefined);
      await new Promise<void>((resolve) => this.client.end(false, {}, () => resolve()));
      this.metrics.connected.set(0);
      await this.producer.disconnect();
    }
  }

  /** The bridge's figures for `<ns>.reports`, with the ack lag since the previous report. */
  private report(): IngestReport {
    const lags = this.lagSamples;
    this.lagSamples = [];
    return {
      kind: 'ingest',
      source: this.clientId,
      at: Date.now(),
      url: this.settings.url,
      ...this.figures(),
      ...(lags.length === 0 ? {} : { ackLagP50Ms: percentile(lags, 50), ackLagP99Ms: percentile(lags, 99) }),
    };
  }

  /** The first connection either succeeds or ends the bridge with its reason: a wrong password should not be retried for ever. */
  private firstConnection(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const failed = (error: Error & { code?: unknown }) => {
        this.client.off('connect', succeeded);
        this.client.end(true);
        reject(new MqttUnreachableError(this.settings.url, describeMqttError(error, this.settings), error));
      };
      const succeeded = () => {
        this.client.off('error', failed);
        this.client.on('error', (error) => this.log(`MQTT ${this.settings.url}: ${error.message}`));
        resolve();
      };
      this.client.once('error', failed);
      this.client.once('connect', succeeded);
      this.client.connect();
    });
  }

  private connected(sessionPresent: boolean): void {
    this.connection++;
    this.reconnectMs = firstReconnectMs;
    this.client.options.reconnectPeriod = this.reconnectMs;
    this.metrics.connected.set(1);
    this.log(`connected to ${this.settings.url} as ${this.clientId}${sessionPresent ? ' (session resumed: unacknowledged messages come again)' : ''}`);
    this.client.subscribe(this.settings.topics, { qos: this.settings.qos }, (error, granted) => {
      if (error) return this.log(`subscribing to ${this.settings.topics.join(', ')} failed: ${error.message}`);
      const refused = (granted ?? []).filter((grant) => grant.qos > 2);
      if (refused.length > 0) return this.log(`the MQTT broker refused the subscription to ${refused.map((grant) => grant.topic).join(', ')} (not authorized?)`);
      this.log(`subscribed to ${this.settings.topics.join(', ')} (QoS ${this.settings.qos})`);
    });
  }

  private reconnecting(): void {
    this.counts.reconnects++;
    this.metrics.reconnects.inc();
    this.reconnectMs = Math.min(this.reconnectMs * 2, maxReconnectMs);
    this.client.options.reconnectPeriod = this.reconnectMs;
  }

  private received(topic: string, payload: Buffer, packet: IPublishPacket): void {
    // Not acknowledged: the broker keeps it for the next session.
    if (this.stopping) return;
    const qos1 = packet.qos > 0 && packet.messageId !== undefined;
    if (!qos1 && this.queue.length >= this.settings.maxUnacked) {
      this.metrics.dropped.inc();
      return;
    }
    const receivedAt = Date.now();
    this.counts.messagesIn++;
    const mapped = this.mapping.map(topic, payload, receivedAt);
    let message: Message;
    if (mapped.ok) {
      message = { key: mapped.sample.deviceId, value: this.sampleCodec.encode(mapped.sample) };
    } else {
      const key = mapped.deviceId === undefined ? null : Buffer.from(mapped.deviceId);
      message = { key, value: this.deadLetterCodec.encode(deadLetterFor({ topic: `mqtt:${topic}`, partition: -1, offset: '-1', key, value: payload, timestamp: String(receivedAt) }, mapped.error, receivedAt)) };
      this.metrics.deadLetters.inc({ reason: mapped.error.code });
    }
    this.queue.push({ topic: mapped.ok ? this.config.inputTopic : this.deadLetterTopic, message, dead: !mapped.ok, receivedAt, messageId: qos1 ? packet.messageId : undefined, connection: this.connection });
    this.wake?.();
  }

  /** Writes the queue's head to Kafka, one request at a time, then acknowledges it in arrival order. */
  private async pump(): Promise<void> {
    while (!this.stopping || this.queue.length > 0) {
      if (this.queue.length === 0) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      if (this.queue.length < this.settings.batchMaxMessages && this.settings.batchMaxWaitMs > 0 && !this.stopping) await new Promise((resolve) => setTimeout(resolve, this.settings.batchMaxWaitMs));
      const batch = this.queue.slice(0, this.settings.batchMaxMessages);
      await this.sendUntilAcknowledged(batch);
      this.queue.splice(0, batch.length);
      this.acknowledge(batch);
    }
  }

  private async sendUntilAcknowledged(batch: readonly Pending[]): Promise<void> {
    const byTopic = new Map<string, Message[]>();
    for (const entry of batch) (byTopic.get(entry.topic) ?? byTopic.set(entry.topic, []).get(entry.topic)!).push(entry.message);
    const topicMessages = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
    for (let delay = 200; ; delay = Math.min(delay * 2, 10_000)) {
      try {
        await this.producer.sendBatch({ topicMessages });
        return;
      } catch (error) {
        this.metrics.kafkaRetries.inc();
        this.log(`writing ${batch.length} record(s) to Kafka failed (${(error as Error).message}); nothing is acknowledged to MQTT until it succeeds: trying again in ${delay} ms`);
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  private acknowledge(batch: readonly Pending[]): void {
    const now = Date.now();
    let dead = 0;
    const ids: number[] = [];
    for (const entry of batch) {
      this.metrics.lag.observe((now - entry.receivedAt) / 1_000);
      if (this.lagSamples.length < maxLagSamples) this.lagSamples.push(now - entry.receivedAt);
      if (entry.dead) dead++;
      // A message from an earlier connection is not acknowledged: that packet id may name another message now, and
      // the broker sends the message again on the new connection (a duplicate in Kafka, never a loss).
      if (entry.messageId !== undefined && entry.connection === this.connection) ids.push(entry.messageId);
    }
    // One socket write for the batch's acknowledgements.
    if (ids.length > 0 && this.client.connected) this.client.stream.write(pubackBytes(ids));
    this.counts.deadLetters += dead;
    this.counts.samplesOut += batch.length - dead;
    this.metrics.samples.inc(batch.length - dead);
  }
}
