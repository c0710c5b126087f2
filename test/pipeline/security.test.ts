import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseExperiment } from '../../pipeline/common/config.js';
import { createKafka } from '../../pipeline/common/kafkaClient.js';
import { latestSnapshots } from '../../pipeline/common/modelStore.js';
import { ownBrokerPorts, runInfraScript } from '../support/broker.js';
import { runCli, spawnTs, cliPath, waitFor, type TsChild } from '../support/childProcess.js';
import { testBrokers } from '../support/kafka.js';
import { mqttClient, startMqttBroker } from '../support/mqtt.js';
import { writeExperimentFile } from '../support/snapshots.js';

/**
 * Issue 16, points 1, 2 and 4: every process over TLS with SASL, against a broker of its own started by
 * `infra/kafka/start --secure` (SASL_SSL, ACLs enforced), each role with only the ACLs `streamgrad acls` grants it.
 */
const dataDir = mkdtempSync(join(tmpdir(), 'streamgrad-secure-'));
const secrets = join(dataDir, 'secrets');
let bootstrap = '';

beforeAll(async () => {
  const started = await runInfraScript('start', ['--secure', '--port', String(ownBrokerPorts.secure), '--data-dir', dataDir, '--timeout', '120']);
  expect(started.code, started.stderr).toBe(0);
  bootstrap = started.stdout.split('\n').at(-1)!;
  expect(started.stderr).toContain(`CA certificate:      ${secrets}/ca.pem`);
}, 180_000);

afterAll(async () => {
  await runInfraScript('stop', ['--clean', '--data-dir', dataDir]);
}, 60_000);

/** The client key of mutual TLS, encrypted with a passphrase kept in a file of its own. */
const encryptedKey = join(dataDir, 'client-encrypted.key');
const keyPassphrase = join(dataDir, 'client-key.passphrase');
beforeAll(() => {
  writeFileSync(keyPassphrase, 'a passphrase of the test\n');
  execFileSync('openssl', ['pkey', '-in', join(secrets, 'client.key'), '-aes256', '-passout', `file:${keyPassphrase}`, '-out', encryptedKey]);
});

const id = randomUUID().slice(0, 8);
const namespace = `sec-${id}`;

/** The experiment as `user` sees it: TLS with the local CA, SASL with the user's password from its file. */
function experiment(user: string, security: object = {}) {
  return {
    brokers: [bootstrap],
    namespace,
    inputTopic: `${namespace}.telemetry`,
    inputPartitions: 3,
    model: { kind: 'linear', features: 16, shards: 2, optimizer: { kind: 'adam', learningRate: 0.03 } },
    batchSize: 128,
    simulator: { devices: 30, ratePerSecond: 20_000, seed: 3, dropoutRate: 0.002 },
    sessionTimeoutMs: 6_000,
    security: { tls: { caFile: join(secrets, 'ca.pem') }, sasl: { mechanism: 'scram-sha-512', username: user, password: { file: join(secrets, `${user}.password`) } }, ...security },
  };
}

const configOf = (user: string, security?: object) => writeExperimentFile(experiment(user, security));
// KAFKA_BROKERS would override the file's brokers: point it at the secure broker too.
const env = () => ({ KAFKA_BROKERS: bootstrap });
const cli = async (args: string[]) => {
  const result = await runCli(args, env());
  if (result.code !== 0) throw new Error(`streamgrad ${args.join(' ')} exited ${result.code}:\n${result.stderr.join('\n')}`);
  return result;
};

describe('a secured cluster (TLS, SASL, ACLs)', () => {
  it('workers, a server, a producer and a reader, each with only its role\'s ACLs, train every record exactly once; replay runs as admin with SCRAM-SHA-256 and mutual TLS', async () => {
    const admin = configOf('admin');
    for (const role of ['worker', 'server', 'reader', 'producer']) {
      const { stdout } = await cli(['acls', '--config', admin, '--role', role, '--principal', `User:${role}`, '--apply']);
      expect(stdout.join('\n')).toContain(`allow User:${role} from any host:`);
    }
    const total = 12_000;
    await cli(['simulate', '--config', configOf('producer'), '--count', String(total)]);

    // Structured logs: the server and one worker write JSON lines, the other worker human ones.
    const json = { ...env(), STREAMGRAD_LOG_FORMAT: 'json' };
    const processes: TsChild[] = [
      spawnTs(cliPath, ['ps', '--config', configOf('server')], { env: json }),
      spawnTs(cliPath, ['worker', '--config', configOf('worker'), '--worker-id', 'w1'], { env: json }),
      spawnTs(cliPath, ['worker', '--config', configOf('worker'), '--worker-id', 'w2'], { env: env() }),
    ];
    // KAFKA_BROKERS in this process names the run's plaintext broker: take the secure broker from the file.
    const kafka = createKafka({ brokers: [bootstrap], security: parseExperiment(experiment('reader')).security }, 'security-test');
    try {
      let counters = '';
      await waitFor(`all ${total} records accounted for`, async () => {
        const latest = [...(await latestSnapshots(kafka, namespace)).values()];
        counters = latest.map((s) => `shard ${s.shard}: ${s.samplesApplied} applied, ${s.deadLettered} dead`).join('; ');
        return latest.length === 2 && latest.every((s) => s.samplesApplied + s.deadLettered === total);
      }, 150_000, 500).catch((error: Error) => {
        throw new Error(`${error.message}; ${counters}; exits: ${processes.map((p) => p.process.exitCode).join(',')}`);
      });
    } finally {
      for (const child of processes) child.process.kill('SIGTERM');
    }
    expect(await Promise.all(processes.map((p) => p.exited))).toEqual([0, 0, 0]);
    for (const child of processes) expect(child.errors.join('\n')).not.toMatch(/AUTHORIZATION|denied/i);
    const entries = processes.slice(0, 2).map((child) => child.errors.map((line) => JSON.parse(line) as { role: string; namespace: string; server?: string; worker?: string; msg: string }));
    expect(entries[0]!.every((entry) => entry.role === 'ps' && entry.namespace === namespace && entry.server !== undefined)).toBe(true);
    expect(entries[1]!.every((entry) => entry.role === 'worker' && entry.namespace === namespace && entry.worker === 'w1')).toBe(true);
    expect(entries[0]!.map((entry) => entry.msg)).toContain('stopped');
    expect(processes[2]!.errors).toContain('[worker w2] stopped');
    const passwords = ['server', 'worker', 'admin'].map((user) => readFileSync(join(secrets, `${user}.password`), 'utf8').trim());
    for (const child of processes) for (const password of passwords) expect([...child.errors, ...child.lines].join('\n')).not.toContain(password);

    // The reader audits every input offset and update: exactly once, nothing lost.
    const audit = await cli(['audit', '--config', configOf('reader')]);
    expect(audit.stdout.join('\n')).toMatch(/^OK: every input record up to the committed offsets is trained or dead-lettered exactly once/m);
    const status = JSON.parse((await cli(['status', '--config', configOf('reader'), '--json'])).stdout.join('')) as { lag: number };
    expect(status.lag).toBe(0);

    // Replay as the admin, over mutual TLS (an encrypted client key, its passphrase from a file) and SCRAM-SHA-256:
    // the same records into a namespace of its own.
    const mutual = configOf('admin', {
      tls: { caFile: join(secrets, 'ca.pem'), certFile: join(secrets, 'client.crt'), keyFile: encryptedKey, keyPassword: { file: keyPassphrase } },
      sasl: { mechanism: 'scram-sha-256', username: 'admin', password: { env: 'SECURE_TEST_PASSWORD' } },
    });
    const replayed = await runCli(['replay', '--config', mutual, '--namespace', `${namespace}-replay`, '--json'], { ...env(), SECURE_TEST_PASSWORD: readFileSync(join(secrets, 'admin.password'), 'utf8').trim() });
    expect(replayed.code, replayed.stderr.join('\n')).toBe(0);
    const summary = JSON.parse(replayed.stdout.join('')) as { samples: number; deadLettered: number };
    expect(summary.samples + summary.deadLettered).toBe(total);
  }, 300_000);

  it('refuses what it should, each with one line that names the cause, and exit 2', async () => {
    const refused = async (file: string, extraEnv: Record<string, string> = {}) => {
      const result = await runCli(['status', '--config', file], { ...env(), ...extraEnv });
      expect(result.code, result.stderr.join('\n')).toBe(2);
      expect(result.stderr).toHaveLength(1);
      return result.stderr[0]!;
    };
    const plainBroker = testBrokers().join(',');
    // A wrong password (PLAIN over TLS), named with where it came from; the password itself is never printed.
    const wrong = await refused(configOf('reader', { sasl: { mechanism: 'plain', username: 'reader', password: { env: 'WRONG' } } }), { WRONG: 'not-the-password' });
    expect(wrong).toMatch(/^streamgrad: cannot connect to Kafka at .*: the broker refused the credentials of user 'reader' \(SASL plain\).*environment variable WRONG/);
    expect(wrong).not.toContain('not-the-password');
    // A plaintext client on the SASL_SSL listener.
    expect(await refused(writeExperimentFile({ ...experiment('reader'), security: undefined }))).toMatch(/the broker closed the connection at once: it probably requires TLS \(config\.security\.tls\) or SASL/);
    // TLS but no SASL, to a listener that requires it.
    expect(await refused(writeExperimentFile({ ...experiment('reader'), security: { tls: { caFile: join(secrets, 'ca.pem') } } }))).toMatch(/the broker closed the connection at once: it probably requires SASL authentication \(config\.security\.sasl\)/);
    // TLS without the CA that signed the broker's certificate.
    expect(await refused(configOf('reader', { tls: {} }))).toMatch(/the broker's TLS certificate is not trusted \(\w+\): set config\.security\.tls\.caFile/);
    // TLS to a plaintext listener (the test run's own broker).
    const toPlain = writeExperimentFile({ ...experiment('reader'), brokers: [plainBroker] });
    expect(await refused(toPlain, { KAFKA_BROKERS: plainBroker })).toMatch(/during the TLS handshake: is it a plaintext listener\?/);
    // An encrypted client key with the wrong passphrase: named before any connection.
    writeFileSync(join(dataDir, 'wrong.passphrase'), 'not the passphrase');
    expect(await refused(configOf('reader', { tls: { caFile: join(secrets, 'ca.pem'), certFile: join(secrets, 'client.crt'), keyFile: encryptedKey, keyPassword: { file: join(dataDir, 'wrong.passphrase') } } })))
      .toMatch(/config\.security\.tls\.keyFile: cannot read the private key in .*client-encrypted\.key \(is keyPassword its passphrase\?\)/);
    // A password variable that is not set: named before any connection.
    expect(await refused(configOf('reader', { sasl: { mechanism: 'scram-sha-256', username: 'reader', password: { env: 'STREAMGRAD_UNSET_PASSWORD' } } })))
      .toMatch(/config\.security\.sasl\.password\.env.*STREAMGRAD_UNSET_PASSWORD .*is not set/);
    // A principal without the role it tries: the reader may not run a parameter server.
    const denied = await runCli(['ps', '--config', configOf('reader')], env());
    expect(denied.code).toBe(2);
    expect(denied.stderr.at(-1)).toMatch(/^streamgrad: Kafka denied it: .*AUTHORIZATION.*streamgrad acls/i);
  }, 120_000);

  // After the training test: the bridge writes to the same input topic, whose audit is done by now.
  it('an MQTT ingest bridge with only the ingest role\'s ACLs writes samples, dead letters and reports; nothing else', async () => {
    const { stdout } = await cli(['acls', '--config', configOf('admin'), '--role', 'ingest', '--principal', 'User:ingest', '--apply']);
    expect(stdout.join('\n')).toContain('allow User:ingest from any host:');
    const mqttBroker = await startMqttBroker();
    const mapping = { url: mqttBroker.url, topics: [`sec-${id}/+/telemetry`], clientId: `sec-bridge-${id}`, deviceId: { topicLevel: 1 }, features: ['x'], label: 'y', attributes: ['seq'] };
    const ingestConfig = writeExperimentFile({ ...experiment('ingest'), ingest: { mqtt: mapping } });
    const bridge = spawnTs(cliPath, ['ingest', 'mqtt', '--config', ingestConfig], { env: env() });
    const admin = createKafka({ brokers: [bootstrap], security: parseExperiment(experiment('admin')).security }, 'security-test-ingest');
    const kafkaAdmin = admin.admin();
    try {
      await waitFor('the bridge to subscribe', () => bridge.errors.some((line) => line.includes('subscribed to')), 60_000);
      await kafkaAdmin.connect();
      const ends = async (topic: string) => (await kafkaAdmin.fetchTopicOffsets(topic)).reduce((sum, p) => sum + Number(p.high), 0);
      const withBridgeLog = (error: Error) => {
        throw new Error(`${error.message}; the bridge (exit code ${bridge.process.exitCode}) said:\n${bridge.errors.join('\n')}`);
      };
      const [inputBefore, deadBefore, reportsBefore] = [await ends(`${namespace}.telemetry`), await ends(`${namespace}.dlq`), await ends(`${namespace}.reports`)];
      const device = await mqttClient(mqttBroker.url);
      await Promise.all(Array.from({ length: 500 }, (_, i) => device.publishAsync(`sec-${id}/d${i % 5}/telemetry`, JSON.stringify({ x: Array.from({ length: 16 }, (_, k) => i + k), y: 2 * i, seq: i }), { qos: 1 })));
      await device.publishAsync(`sec-${id}/bad/telemetry`, 'not json', { qos: 1 });
      await device.endAsync();
      await waitFor('500 samples and a dead letter in Kafka', async () => (await ends(`${namespace}.telemetry`)) - inputBefore === 500 && (await ends(`${namespace}.dlq`)) - deadBefore === 1, 60_000, 200).catch(withBridgeLog);
      // Its figures, every 2 s, in <ns>.reports.
      await waitFor('a report of the bridge', async () => (await ends(`${namespace}.reports`)) > reportsBefore, 30_000, 500).catch(withBridgeLog);
    } finally {
      bridge.process.kill('SIGTERM');
      await kafkaAdmin.disconnect();
      await mqttBroker.stop();
    }
    expect(await bridge.exited).toBe(0);
    expect(bridge.errors.join('\n')).not.toMatch(/AUTHORIZATION|denied/i);
    // The ingest role trains nothing: a worker under it is denied.
    const denied = await runCli(['worker', '--config', configOf('ingest')], env());
    expect(denied.code).toBe(2);
    expect(denied.stderr.at(-1)).toMatch(/^streamgrad: Kafka denied it: .*AUTHORIZATION/i);
  }, 180_000);
});
