import { decode as decodeCbor } from 'cborg';
import { z } from 'zod';
import { BadRecordError, type BadRecordCode } from '../../schemas/errors.js';
import type { TrainingSample } from '../../schemas/types.js';
import { secretSourceSchema } from '../common/secrets.js';

/** A field of a payload: a dotted path into the object (`readings.temperature`); a number picks an array element. */
const fieldPath = z.string().regex(/^[^.]+(\.[^.]+)*$/, 'a field name, or a dotted path such as readings.temperature');

/**
 * `ingest.mqtt` of an experiment: where `streamgrad ingest mqtt` reads device messages, and how each becomes a
 * `TrainingSample`. File paths are relative to the working directory.
 */
export const mqttIngestSchema = z
  .object({
    /** The MQTT broker: `mqtt://host:port`, `mqtts://host:port` (TLS), `ws://` or `wss://`. */
    url: z.string().regex(/^(mqtts?|wss?):\/\/[^/]+/, 'an mqtt://, mqtts://, ws:// or wss:// URL'),
    /** Topic filters to subscribe to, wildcards allowed: `plant/+/telemetry`, `sensors/#`. */
    topics: z.array(z.string().min(1)).min(1),
    /** The MQTT client id: its persistent session holds QoS 1 messages while the bridge is down. Default `streamgrad-ingest-<namespace>`. */
    clientId: z.string().min(1).max(65_535).optional(),
    /** The subscription's QoS: 1 (at least once: acknowledged once Kafka holds the record) or 0 (at most once). */
    qos: z.union([z.literal(0), z.literal(1)]).default(1),
    username: z.string().min(1).optional(),
    /** Where the password is: `{ "env": "VAR" }` or `{ "file": "path" }`. */
    password: secretSourceSchema.optional(),
    /** TLS to the broker (on for mqtts:// and wss:// URLs): the CA its certificate is checked against, and a client certificate. */
    tls: z
      .object({ caFile: z.string().min(1).optional(), certFile: z.string().min(1).optional(), keyFile: z.string().min(1).optional() })
      .strict()
      .refine((tls) => (tls.certFile === undefined) === (tls.keyFile === undefined), "give both 'certFile' and 'keyFile', or neither")
      .optional(),
    /** How payloads are encoded. */
    format: z.enum(['json', 'cbor']).default('json'),
    /** Where the device id (the record key) comes from: a level of the topic (0 is the first), or a payload field. */
    deviceId: z.union([z.object({ topicLevel: z.number().int().nonnegative() }).strict(), z.object({ field: fieldPath }).strict()]),
    /** The features, in order: each a field holding a number, or an array of numbers (taken in its order). */
    features: z.array(fieldPath).min(1),
    /** The field of the label: a number (regression, a class index), or an array of numbers (one per output). */
    label: fieldPath,
    /** The field of the event time, and its unit: ms or s since the epoch, or an ISO-8601 string. Default: the time the bridge received the message. */
    eventTime: z.object({ field: fieldPath, unit: z.enum(['ms', 's', 'iso']).default('ms') }).strict().optional(),
    /** The field of the sample's weight (default 1). */
    weight: fieldPath.optional(),
    /** Payload fields copied into the sample's attributes, as strings. */
    attributes: z.array(fieldPath).default([]),
    /** The most QoS 1 messages the broker may send before the bridge acknowledges them (MQTT 5 receive maximum): the bridge's memory bound. */
    maxUnacked: z.number().int().min(1).max(65_535).default(20_000),
    /** A Kafka request carries at most this many records … */
    batchMaxMessages: z.number().int().positive().default(5_000),
    /** … and waits at most this long for more, while the previous request is in flight. */
    batchMaxWaitMs: z.number().int().nonnegative().default(5),
  })
  .strict();

export type MqttIngestConfig = z.output<typeof mqttIngestSchema>;

/** A message that did not map: why, and the device id when it was found. */
export interface MappingFailure {
  readonly error: BadRecordError;
  readonly deviceId: string | undefined;
}

export type MappingResult = { readonly ok: true; readonly sample: TrainingSample } | ({ readonly ok: false } & MappingFailure);

type Payload = Readonly<Record<string, unknown>>;

const fail = (code: BadRecordCode, topic: string, detail: string, deviceId?: string): MappingResult => ({ ok: false, error: new BadRecordError(code, undefined, `MQTT topic ${topic}: ${detail}`), deviceId });

function readField(payload: Payload, path: readonly string[]): unknown {
  let value: unknown = payload;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

function parsePayload(format: MqttIngestConfig['format'], bytes: Buffer): Payload | undefined {
  try {
    const value: unknown = format === 'json' ? JSON.parse(bytes.toString('utf8')) : decodeCbor(bytes);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Payload) : undefined;
  } catch {
    return undefined;
  }
}

function eventTimeOf(value: unknown, unit: 'ms' | 's' | 'iso'): number | undefined {
  if (unit === 'iso') return typeof value === 'string' && !Number.isNaN(Date.parse(value)) ? Date.parse(value) : undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) return undefined;
  return Math.round(unit === 's' ? value * 1_000 : value);
}

/**
 * A compiled `ingest.mqtt` mapping: `map(topic, payload, receivedAt)` turns one MQTT message into a
 * `TrainingSample` keyed by its device id, or says why it cannot (the dead-letter reason), never throwing.
 */
export class MqttMapping {
  private readonly features: readonly (readonly string[])[];
  private readonly label: readonly string[];
  private readonly device: { readonly level: number } | { readonly path: readonly string[] };
  private readonly eventTime: { readonly path: readonly string[]; readonly unit: 'ms' | 's' | 'iso' } | undefined;
  private readonly weight: readonly string[] | undefined;
  private readonly attributes: readonly (readonly [string, readonly string[]])[];

  constructor(private readonly config: MqttIngestConfig) {
    const split = (path: string) => path.split('.');
    this.features = config.features.map(split);
    this.label = split(config.label);
    this.device = 'topicLevel' in config.deviceId ? { level: config.deviceId.topicLevel } : { path: split(config.deviceId.field) };
    this.eventTime = config.eventTime && { path: split(config.eventTime.field), unit: config.eventTime.unit };
    this.weight = config.weight === undefined ? undefined : split(config.weight);
    this.attributes = config.attributes.map((path) => [path, split(path)] as const);
  }

  map(topic: string, bytes: Buffer, receivedAt: number): MappingResult {
    const payload = parsePayload(this.config.format, bytes);
    const deviceId = this.deviceIdOf(topic, payload);
    if (payload === undefined) return fail('PAYLOAD', topic, `not a ${this.config.format.toUpperCase()} object`, deviceId);
    if (deviceId === undefined) return fail('MISSING_FIELD', topic, `no device id ${'level' in this.device ? `at topic level ${this.device.level}` : `in field '${this.device.path.join('.')}'`}`);
    const features: number[] = [];
    for (let i = 0; i < this.features.length; i++) {
      const problem = pushNumbers(features, readField(payload, this.features[i]!), this.config.features[i]!);
      if (problem) return fail(problem.code, topic, problem.detail, deviceId);
    }
    const labelValue = readField(payload, this.label);
    const labels: number[] = [];
    const labelProblem = pushNumbers(labels, labelValue, this.config.label);
    if (labelProblem) return fail(labelProblem.code, topic, labelProblem.detail, deviceId);
    let eventTime = receivedAt;
    if (this.eventTime) {
      const time = eventTimeOf(readField(payload, this.eventTime.path), this.eventTime.unit);
      if (time === undefined) return fail(readField(payload, this.eventTime.path) === undefined ? 'MISSING_FIELD' : 'WRONG_TYPE', topic, `field '${this.config.eventTime!.field}' is not an event time in ${this.eventTime.unit}`, deviceId);
      eventTime = time;
    }
    let weight = 1;
    if (this.weight) {
      const value = readField(payload, this.weight);
      if (typeof value !== 'number') return fail(value === undefined ? 'MISSING_FIELD' : 'WRONG_TYPE', topic, `field '${this.config.weight!}' is not a number`, deviceId);
      if (!Number.isFinite(value) || value < 0) return fail(Number.isFinite(value) ? 'WEIGHT' : 'NON_FINITE', topic, `weight ${value}`, deviceId);
      weight = value;
    }
    const attributes: Record<string, string> = {};
    for (const [name, path] of this.attributes) {
      const value = readField(payload, path);
      if (value !== undefined && value !== null) attributes[name] = typeof value === 'string' ? value : JSON.stringify(value);
    }
    const scalarLabel = !Array.isArray(labelValue);
    return { ok: true, sample: { deviceId, eventTime, features, label: scalarLabel ? labels[0]! : null, labels: scalarLabel ? [] : labels, weight, attributes } };
  }

  private deviceIdOf(topic: string, payload: Payload | undefined): string | undefined {
    if ('level' in this.device) return topic.split('/')[this.device.level] || undefined;
    const value = payload === undefined ? undefined : readField(payload, this.device.path);
    return typeof value === 'string' && value !== '' ? value : typeof value === 'number' ? String(value) : undefined;
  }
}

/** Appends a field's number (or array of numbers) to `into`; a problem names the field. */
function pushNumbers(into: number[], value: unknown, field: string): { code: BadRecordCode; detail: string } | undefined {
  if (value === undefined) return { code: 'MISSING_FIELD', detail: `no field '${field}'` };
  const values = Array.isArray(value) ? (value as unknown[]) : [value];
  for (const v of values) {
    // JSON has no NaN: a sensor that reports none sends null.
    if (v === null) return { code: 'NON_FINITE', detail: `field '${field}' is null` };
    if (typeof v !== 'number') return { code: 'WRONG_TYPE', detail: `field '${field}' holds ${typeof v === 'string' ? `the string ${JSON.stringify(v.slice(0, 40))}` : typeof v}, not a number` };
    if (!Number.isFinite(v)) return { code: 'NON_FINITE', detail: `field '${field}' is ${v}` };
    into.push(v);
  }
  return undefined;
}
