import { encode as encodeCbor } from 'cborg';
import { describe, expect, it } from 'vitest';
import { MqttMapping, mqttIngestSchema } from '../../../pipeline/ingest/mapping.js';

const mapping = (overrides: object = {}) =>
  new MqttMapping(mqttIngestSchema.parse({ url: 'mqtt://127.0.0.1:1883', topics: ['plant/+/telemetry'], deviceId: { topicLevel: 1 }, features: ['t', 'h'], label: 'y', ...overrides }));
const json = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('the MQTT ingest mapping', () => {
  it('maps a JSON message: device id from the topic, features in order, label, event time, weight, attributes', () => {
    const result = mapping({ features: ['t', 'extra.v'], eventTime: { field: 'ts', unit: 's' }, weight: 'w', attributes: ['site', 'meta'] }).map('plant/d-7/telemetry', json({ t: 21.5, extra: { v: [1, 2] }, y: 0.25, ts: 1_700_000_000.5, w: 2, site: 's1', meta: { a: 1 } }), 99);
    expect(result).toEqual({ ok: true, sample: { deviceId: 'd-7', eventTime: 1_700_000_000_500, features: [21.5, 1, 2], label: 0.25, labels: [], weight: 2, attributes: { site: 's1', meta: '{"a":1}' } } });
  });

  it('maps CBOR, a device id field, ISO event times and multi-output labels; the arrival time when no event time is mapped', () => {
    const cbor = mapping({ format: 'cbor', deviceId: { field: 'id' }, eventTime: { field: 'at', unit: 'iso' } }).map('x', Buffer.from(encodeCbor({ id: 'd-1', t: 1, h: 2, y: [0, 1], at: '2026-11-30T00:00:00Z' })), 5);
    expect(cbor).toMatchObject({ ok: true, sample: { deviceId: 'd-1', eventTime: Date.parse('2026-11-30T00:00:00Z'), features: [1, 2], label: null, labels: [0, 1] } });
    expect(mapping().map('plant/d/telemetry', json({ t: 1, h: 2, y: 3 }), 1234)).toMatchObject({ ok: true, sample: { eventTime: 1234, weight: 1 } });
  });

  it.each([
    ['not JSON', Buffer.from('{"t": 1,'), 'PAYLOAD'],
    ['a JSON array', json([1, 2]), 'PAYLOAD'],
    ['no label', json({ t: 1, h: 2 }), 'MISSING_FIELD'],
    ['a string feature', json({ t: '21.5', h: 2, y: 1 }), 'WRONG_TYPE'],
    ['a null feature (a sensor that dropped out)', json({ t: null, h: 2, y: 1 }), 'NON_FINITE'],
    ['a huge number that JSON reads as Infinity', Buffer.from('{"t": 1e999, "h": 2, "y": 1}'), 'NON_FINITE'],
  ])('refuses %s with its reason, naming the topic, never throwing', (_, payload, code) => {
    const result = mapping().map('plant/d-9/telemetry', payload, 1);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.code).toBe(code);
    expect(result.error.message).toContain('plant/d-9/telemetry');
    expect(result.deviceId).toBe('d-9');
  });

  it('refuses a message without a device id, a bad event time and a negative weight', () => {
    expect(mapping({ deviceId: { field: 'id' } }).map('t', json({ t: 1, h: 2, y: 1 }), 1)).toMatchObject({ ok: false, error: { code: 'MISSING_FIELD' } });
    expect(mapping({ eventTime: { field: 'ts' } }).map('a/b', json({ t: 1, h: 2, y: 1, ts: 'yesterday' }), 1)).toMatchObject({ ok: false, error: { code: 'WRONG_TYPE' } });
    expect(mapping({ weight: 'w' }).map('a/b', json({ t: 1, h: 2, y: 1, w: -1 }), 1)).toMatchObject({ ok: false, error: { code: 'WEIGHT' } });
  });

  it('names the bad field of a mapping', () => {
    expect(() => mqttIngestSchema.parse({ url: 'http://x', topics: [], deviceId: { topicLevel: -1 }, features: [], label: '' })).toThrow(/url[\s\S]*topics[\s\S]*deviceId[\s\S]*features[\s\S]*label/);
  });
});
