import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseExperiment } from '../../../pipeline/common/config.js';
import { topicsOf } from '../../../pipeline/common/topics.js';
import { signatureHeaders, UpdateKeys } from '../../../pipeline/common/updateSigning.js';
import { startParameterServer } from '../../../pipeline/server/parameterServer.js';
import { startWorker } from '../../../pipeline/worker/worker.js';
import { codecFor, ConfigError, type ModelSnapshot, type ParameterUpdate } from '../../../schemas/index.js';
import { kafkaTest as test } from '../../support/kafka.js';
import { latestSnapshots, waitForShards } from '../../support/snapshots.js';

const current = 'current-secret-0123456789abcdef';
const previous = 'previous-secret-0123456789abcdef';

describe('UpdateKeys', () => {
  process.env.SG_TEST_CURRENT_KEY = current;
  process.env.SG_TEST_PREVIOUS_KEY = previous;
  const both = UpdateKeys.load([{ id: 'k2', env: 'SG_TEST_CURRENT_KEY' }, { id: 'k1', env: 'SG_TEST_PREVIOUS_KEY' }])!;
  const old = UpdateKeys.load([{ id: 'k1', env: 'SG_TEST_PREVIOUS_KEY' }])!;
  const value = Buffer.from('an encoded update');

  it('signs with the first key and verifies under any of them: rotation keeps accepting the old key', () => {
    expect(both.sign(value)[signatureHeaders.keyId]).toBe('k2');
    expect(both.refusal(value, both.sign(value))).toBeUndefined();
    expect(both.refusal(value, old.sign(value))).toBeUndefined();
    expect(old.refusal(value, both.sign(value))).toMatch(/signed with key 'k2', which is not one of this namespace's keys \(k1\)/);
  });

  it('refuses a missing signature, another value, a wrong secret, and says which', () => {
    expect(both.refusal(value, {})).toMatch(/not signed/);
    expect(both.refusal(Buffer.from('an encoded updatf'), both.sign(value))).toMatch(/does not match the record under key 'k2'/);
    process.env.SG_TEST_WRONG_KEY = 'not-the-secret-0123456789abcdef';
    const forger = UpdateKeys.load([{ id: 'k2', env: 'SG_TEST_WRONG_KEY' }])!;
    expect(both.refusal(value, forger.sign(value))).toMatch(/does not match/);
    expect(both.refusal(value, { ...both.sign(value), [signatureHeaders.signature]: 'AAAA' })).toMatch(/does not match/);
  });

  it('reads secrets from files, and names the field and the variable, never the secret, when it cannot', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'streamgrad-key-')), 'k1');
    writeFileSync(file, `${previous}\n`);
    expect(UpdateKeys.load([{ id: 'k1', file }])!.refusal(value, old.sign(value))).toBeUndefined();
    const failures = [
      () => UpdateKeys.load([{ id: 'k1', env: 'SG_TEST_UNSET_KEY' }]),
      () => UpdateKeys.load([{ id: 'k1', file: join(tmpdir(), 'no-such-streamgrad-key') }]),
      () => {
        process.env.SG_TEST_SHORT_KEY = 'short';
        return UpdateKeys.load([{ id: 'k1', env: 'SG_TEST_SHORT_KEY' }]);
      },
    ];
    const messages = failures.map((fail) => {
      try {
        fail();
        return 'no error';
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        return (error as Error).message;
      }
    });
    expect(messages[0]).toBe("invalid configuration: config.updateSigning.keys.0.env: the environment variable SG_TEST_UNSET_KEY (the secret of key 'k1') is not set");
    expect(messages[1]).toMatch(/^invalid configuration: config\.updateSigning\.keys\.0\.file: cannot read .*no-such-streamgrad-key \(the secret of key 'k1'\): ENOENT$/);
    expect(messages[2]).toBe("invalid configuration: config.updateSigning.keys.0: the secret of key 'k1' has 5 bytes; it needs at least 16");
    for (const message of messages) expect(message).not.toContain(current);
  });

  it('is configured in the experiment file by id and where the secret is, never the secret itself', () => {
    const base = { brokers: ['127.0.0.1:1'], namespace: 'ns', inputTopic: 'in', model: { kind: 'linear', features: 2 } };
    expect(parseExperiment({ ...base, updateSigning: { keys: [{ id: 'k1', env: 'X' }] } }).updateSigning?.keys).toEqual([{ id: 'k1', env: 'X' }]);
    expect(() => parseExperiment({ ...base, updateSigning: { keys: [{ id: 'k1', secret: 'inline' }] } })).toThrow(/updateSigning\.keys\.0/);
    expect(() => parseExperiment({ ...base, updateSigning: { keys: [{ id: 'k1', env: 'X', file: 'y' }] } })).toThrow(/exactly one of 'env' and 'file'/);
    expect(() => parseExperiment({ ...base, updateSigning: { keys: [{ id: 'k1', env: 'X' }, { id: 'k1', env: 'Y' }] } })).toThrow(/key ids must differ/);
  });
});

describe('signed updates through a real broker', () => {
  test('the server applies the workers\' signed updates and refuses forged ones from a foreign producer, leaving the model as it was', async ({ kafka }) => {
    process.env.SG_TEST_CURRENT_KEY = current;
    process.env.SG_TEST_PREVIOUS_KEY = previous;
    const total = 2_000;
    const input = await kafka.createTopic({ partitions: 2, prefix: 'signed' });
    const namespace = `signed-${input}`;
    const samples = codecFor('TrainingSample');
    await kafka.produce(input, total, (i) => {
      const features = [Math.fround(Math.sin(i)), Math.fround(Math.cos(i))];
      return { key: `d${i % 7}`, value: samples.encode({ deviceId: `d${i % 7}`, eventTime: i, features, label: Math.fround(2 * features[0]! - features[1]!), labels: [], weight: 1, attributes: {} }) };
    });
    const config = parseExperiment({
      brokers: kafka.brokers,
      namespace,
      inputTopic: input,
      model: { kind: 'linear', features: 2, shards: 2, optimizer: { kind: 'sgd', learningRate: 0.1 } },
      batchSize: 100,
      checkpointIntervalMs: 100,
      server: { snapshotEveryUpdates: 5, snapshotIntervalMs: 100 },
      updateSigning: { keys: [{ id: 'k2', env: 'SG_TEST_CURRENT_KEY' }, { id: 'k1', env: 'SG_TEST_PREVIOUS_KEY' }] },
    });
    const logged: string[] = [];
    const server = await startParameterServer(config, { log: (line) => logged.push(line) });
    const topics = topicsOf(namespace);
    const updates = codecFor('ParameterUpdate');
    const producer = await kafka.producer();
    try {
      const worker = await startWorker({ ...config, workerId: 'signer' }, { log: (line) => logged.push(line) });
      try {
        await waitForShards(kafka, namespace, 2, 'the signed updates applied', (s) => s.samplesApplied === total, 60_000);
      } finally {
        worker.stop();
        await worker.done;
      }
      expect(logged.some((line) => line.includes("signing updates with key 'k2'"))).toBe(true);
      expect(logged.join('\n')).not.toContain(current);
      const before = await latestSnapshots(kafka, namespace);
      expect([...before.values()].map((s) => s.updatesRefused)).toEqual([0, 0]);

      // Forged records, each a well-formed ParameterUpdate for a shard, with new input offsets and huge gradients.
      const genuine = (await kafka.readCommittedRecords(topics.updates)).map((r) => ({ partition: r.partition, update: updates.decode(r.value) })).filter((r) => r.update.ok && r.update.value.sampleCount > 0);
      const forge = (shard: number, firstOffset: number): Buffer => {
        const { update } = genuine.find((r) => r.partition === shard)!;
        const original = (update as { ok: true; value: ParameterUpdate }).value;
        const tensors = original.tensors.map((t) => ({ ...t, bytes: Buffer.from(new Float32Array(t.bytes.length / 4).fill(1e6).buffer) }));
        return updates.encode({ ...original, offsets: [{ topic: input, partition: 0, firstOffset, lastOffset: firstOffset + 99 }], tensors });
      };
      process.env.SG_TEST_WRONG_KEY = 'not-the-secret-0123456789abcdef';
      const forger = UpdateKeys.load([{ id: 'k2', env: 'SG_TEST_WRONG_KEY' }])!;
      const unknown = UpdateKeys.load([{ id: 'k9', env: 'SG_TEST_WRONG_KEY' }])!;
      const signer = UpdateKeys.load([{ id: 'k2', env: 'SG_TEST_CURRENT_KEY' }])!;
      for (const shard of [0, 1]) {
        const value = forge(shard, 10_000);
        const tampered = Buffer.from(value);
        tampered[tampered.length - 1]! ^= 1;
        await producer.send({
          topic: topics.updates,
          messages: [
            { partition: shard, key: String(shard), value }, // unsigned
            { partition: shard, key: String(shard), value, headers: forger.sign(value) }, // the right key id, a wrong secret
            { partition: shard, key: String(shard), value, headers: unknown.sign(value) }, // a key the namespace does not have
            { partition: shard, key: String(shard), value: tampered, headers: signer.sign(value) }, // signed, then changed
          ],
        });
      }
      await waitForShards(kafka, namespace, 2, 'the forged updates refused', (s) => s.updatesRefused >= 4, 30_000);
      const after = await latestSnapshots(kafka, namespace);
      for (const shard of [0, 1]) {
        const [was, is] = [before.get(shard)!, after.get(shard)!];
        expect(is.tensors, `the weights of shard ${shard}`).toEqual(was.tensors);
        // Nothing a forged record says counts, not even its sample count.
        expect(is).toMatchObject({ samplesApplied: total, updatesApplied: was.updatesApplied, samplesRefused: 0 });
      }
      const deadLetters = (await kafka.readCommittedValues(topics.serverDeadLetters)).map((bytes) => {
        const decoded = codecFor('DeadLetter').decode(bytes);
        if (!decoded.ok) throw decoded.error;
        return decoded.value;
      });
      expect(deadLetters.map((d) => d.errorCode)).toEqual(Array(8).fill('SIGNATURE'));
      expect(deadLetters.map((d) => d.errorMessage).join('\n')).toMatch(/not signed[\s\S]*does not match the record under key 'k2'[\s\S]*key 'k9', which is not one of this namespace's keys \(k2, k1\)/);

      // An update signed with the previous key (mid-rotation) is applied.
      const legitimate = (shard: number): Buffer => {
        const { update } = genuine.find((r) => r.partition === shard)!;
        return updates.encode({ ...(update as { ok: true; value: ParameterUpdate }).value, offsets: [{ topic: input, partition: 0, firstOffset: 20_000, lastOffset: 20_099 }] });
      };
      const previousKey = UpdateKeys.load([{ id: 'k1', env: 'SG_TEST_PREVIOUS_KEY' }])!;
      await producer.send({ topic: topics.updates, messages: [0, 1].map((shard) => ({ partition: shard, key: String(shard), value: legitimate(shard), headers: previousKey.sign(legitimate(shard)) })) });
      await waitForShards(kafka, namespace, 2, 'the update signed with the previous key applied', (s: ModelSnapshot) => s.samplesApplied > total, 30_000);
    } finally {
      server.stop();
      await server.done;
    }
  }, 180_000);
});
