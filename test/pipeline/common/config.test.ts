import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadExperiment, parseExperiment } from '../../../pipeline/common/config.js';

describe('worker configuration', () => {
  it('loads the shipped examples, JSON and YAML', () => {
    const linear = loadExperiment(new URL('../../../examples/linear.json', import.meta.url).pathname);
    expect(linear).toMatchObject({ namespace: 'demo', model: { kind: 'linear', features: 16, shards: 2 }, batchSize: 256 });
    const mlp = loadExperiment(new URL('../../../examples/mlp.yaml', import.meta.url).pathname);
    expect(mlp).toMatchObject({ encoding: 'INT8', model: { kind: 'mlp', layers: [{ units: 64 }, { units: 64, dropout: 0.1 }] } });
    const iot = loadExperiment(new URL('../../../examples/iot.yaml', import.meta.url).pathname);
    expect(iot).toMatchObject({ namespace: 'iot', inputPartitions: 4, simulator: { devices: 200, ratePerSecond: 5_000 }, metricsPort: 9464 });
    const replay = loadExperiment(new URL('../../../examples/iot-replay-lr0.003.yaml', import.meta.url).pathname);
    expect(replay).toMatchObject({ inputTopic: iot.inputTopic, model: { optimizer: { learningRate: 0.003 } } });
  });

  it('names the bad field and the allowed values', () => {
    expect(() => parseExperiment({ namespace: 'n', inputTopic: 't', model: { kind: 'linear', features: 4 }, encoding: 'INT4' })).toThrow(/config\.encoding: .*FP32.*FP16.*INT8/);
    expect(() => parseExperiment({ namespace: 'has space', inputTopic: 't', model: { kind: 'linear', features: 4 } })).toThrow('config.namespace: letters, digits');
    expect(() => parseExperiment({ namespace: 'n', inputTopic: 't', model: { kind: 'mlp', features: 4, layers: [] } })).toThrow('config.model.layers');
    // Several local steps per update need a worker that steps its own optimizer, and a lane that holds their batch.
    expect(() => parseExperiment({ namespace: 'n', inputTopic: 't', model: { kind: 'linear', features: 4, updates: 'gradients' }, stepsPerUpdate: 2 })).toThrow(/config\.stepsPerUpdate: 2 needs model\.updates 'deltas'/);
    expect(() => parseExperiment({ namespace: 'n', inputTopic: 't', model: { kind: 'linear', features: 4 }, batchSize: 256, stepsPerUpdate: 8, maxInFlight: 1_000 })).toThrow(/config\.maxInFlight: 1000 records per lane cannot hold one batch of batchSize 256 × stepsPerUpdate 8/);
    // Unless given: 8 micro-batches per update with deltas (as many as a lane holds, if fewer), 1 with gradients or sync.
    const linear = { namespace: 'n', inputTopic: 't', model: { kind: 'linear', features: 4 } };
    expect(parseExperiment(linear).stepsPerUpdate).toBe(8);
    expect(parseExperiment({ ...linear, stepsPerUpdate: 1 }).stepsPerUpdate).toBe(1);
    expect(parseExperiment({ ...linear, maxInFlight: 600 }).stepsPerUpdate).toBe(2);
    expect(parseExperiment({ ...linear, batchSize: 500, maxInFlight: 600 }).stepsPerUpdate).toBe(1);
    expect(parseExperiment({ ...linear, model: { ...linear.model, updates: 'gradients' } }).stepsPerUpdate).toBe(1);
    expect(parseExperiment({ ...linear, sync: true }).stepsPerUpdate).toBe(1);
  });

  it('keeps a hard staleness bound by default, four times the budget of updates in flight unless the file sets one', () => {
    const base = { namespace: 'n', inputTopic: 't', model: { kind: 'linear', features: 4 } };
    expect(parseExperiment(base).server.staleness).toEqual({ policy: 'retrain', bound: 64 });
    expect(parseExperiment({ ...base, maxInFlightUpdates: 50 }).server.staleness).toEqual({ policy: 'retrain', bound: 200 });
    expect(parseExperiment({ ...base, server: { staleness: { bound: 80 } } }).server.staleness).toEqual({ policy: 'retrain', bound: 80 });
    expect(parseExperiment({ ...base, server: { staleness: { policy: 'drop', bound: 3 } } }).server.staleness).toEqual({ policy: 'drop', bound: 3 });
    // A bound the lane's own updates in flight would exceed is refused, with the field and the way out.
    expect(() => parseExperiment({ ...base, server: { staleness: { bound: 20 } } })).toThrow(/config\.server\.staleness\.bound: 20 is too tight .*maxInFlightUpdates 16.*at least 4 times that \(64\)/);
    expect(() => parseExperiment({ ...base, maxInFlightUpdates: 0 })).toThrow(/config\.server\.staleness\.bound: .*maxInFlightUpdates ≥ 1/);
  });

  it('says which file is unreadable or malformed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'streamgrad-config-'));
    writeFileSync(join(dir, 'bad.yaml'), 'model: [unclosed');
    expect(() => loadExperiment(join(dir, 'bad.yaml'))).toThrow(/bad\.yaml is not valid YAML/);
    expect(() => loadExperiment(join(dir, 'missing.json'))).toThrow(/cannot read .*missing\.json/);
  });

  it('checks the security block by field, and reads no secret into the configuration', () => {
    const base = { namespace: 'n', inputTopic: 't', model: { kind: 'linear', features: 4 } };
    const sasl = { mechanism: 'scram-sha-512', username: 'w', password: { env: 'KAFKA_PASSWORD' } };
    expect(parseExperiment({ ...base, security: { tls: {}, sasl } }).security).toEqual({ tls: { enabled: true }, sasl });
    expect(() => parseExperiment({ ...base, security: { sasl: { ...sasl, mechanism: 'gssapi' } } })).toThrow(/config\.security\.sasl\.mechanism: .*plain.*scram-sha-256.*scram-sha-512/);
    expect(() => parseExperiment({ ...base, security: { sasl: { ...sasl, password: 'hunter2hunter2' } } })).toThrow(/config\.security\.sasl\.password/);
    expect(() => parseExperiment({ ...base, security: { sasl: { ...sasl, password: { env: 'A', file: 'b' } } } })).toThrow(/config\.security\.sasl\.password: give exactly one of 'env' and 'file'/);
    expect(() => parseExperiment({ ...base, security: { tls: { certFile: 'c.pem' } } })).toThrow(/config\.security\.tls: give both 'certFile' and 'keyFile', or neither/);
    expect(() => parseExperiment({ ...base, security: { tls: { ca: 'x' } } })).toThrow(/config\.security\.tls/);
    expect(() => parseExperiment({ ...base, security: { tls: { keyPassword: { env: 'P' } } } })).toThrow(/config\.security\.tls: 'keyPassword' is the passphrase of 'keyFile'/);
  });
});
