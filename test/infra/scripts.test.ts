import { createServer, type Server } from 'node:net';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { createTopics } from '../../pipeline/common/topics.js';
import { ownBrokerPorts, runInfraScript } from '../support/broker.js';

// These start brokers of their own on ports away from the run's broker.
const hasJava = (() => {
  try {
    execFileSync('java', ['-version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const dataDirs: string[] = [];
function freshDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'streamgrad-infra-'));
  dataDirs.push(dir);
  return dir;
}

function listening(port: number): boolean {
  return execFileSync('ss', ['-Hltn', `( sport = :${port} )`]).toString().trim() !== '';
}

function admin(brokers: string) {
  return new Kafka({ clientId: 'infra-test', brokers: brokers.split(','), logLevel: logLevel.NOTHING }).admin();
}

afterAll(async () => {
  for (const dir of dataDirs) await runInfraScript('stop', ['--clean', '--data-dir', dir]);
});

describe.runIf(hasJava)('infra/kafka scripts', () => {
  it('keeps topics and messages across stop and start, and removes everything on stop --clean', async () => {
    const dataDir = freshDataDir();
    const port = 19492;
    const started = await runInfraScript('start', ['--port', String(port), '--data-dir', dataDir]);
    expect(started.code, started.stderr).toBe(0);
    expect(started.stderr).toMatch(/Kafka is ready at 127\.0\.0\.1:19492/);
    expect(started.stdout.split('\n').at(-1)).toBe('127.0.0.1:19492');
    // Tests get their partitions at once: no wait for more members of a new group (Kafka's default is 3 s).
    expect(readFileSync(join(dataDir, 'node1', 'server.properties'), 'utf8')).toMatch(/^group\.initial\.rebalance\.delay\.ms=0$/m);

    const again = await runInfraScript('start', ['--port', String(port), '--data-dir', dataDir]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/already running at 127\.0\.0\.1:19492.*reusing it/);

    const kafka = new Kafka({ clientId: 'infra-test', brokers: [started.stdout], logLevel: logLevel.NOTHING });
    const client = kafka.admin();
    await client.connect();
    await client.createTopics({ waitForLeaders: true, topics: [{ topic: 'kept', numPartitions: 2 }] });
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: 'kept', acks: -1, messages: Array.from({ length: 10 }, (_, i) => ({ value: `v${i}` })) });
    await producer.disconnect();
    await client.disconnect();

    const stopped = await runInfraScript('stop', ['--data-dir', dataDir]);
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(listening(port)).toBe(false);
    const restarted = await runInfraScript('start', ['--port', String(port), '--data-dir', dataDir]);
    expect(restarted.code, restarted.stderr).toBe(0);

    const consumer = kafka.consumer({ groupId: 'infra-test-kept' });
    await consumer.connect();
    await consumer.subscribe({ topic: 'kept', fromBeginning: true });
    const values: string[] = [];
    await new Promise<void>((resolve) => {
      void consumer.run({
        eachMessage: async ({ message }) => {
          values.push(message.value?.toString() ?? '');
          if (values.length === 10) resolve();
        },
      });
    });
    await consumer.disconnect();
    expect(values.sort()).toEqual(Array.from({ length: 10 }, (_, i) => `v${i}`).sort());

    expect((await runInfraScript('stop', ['--clean', '--data-dir', dataDir])).code).toBe(0);
    expect(listening(port)).toBe(false);
    expect(listening(port + 1000)).toBe(false);
    expect(existsSync(dataDir)).toBe(false);
  });

  it('starts a 3-broker cluster that an admin client sees whole', async () => {
    const dataDir = freshDataDir();
    const result = await runInfraScript('start', ['--nodes', '3', '--port', '19592', '--data-dir', dataDir]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.split('\n').at(-1)).toBe('127.0.0.1:19592,127.0.0.1:19593,127.0.0.1:19594');
    const client = admin(result.stdout);
    await client.connect();
    // Each broker answers metadata from its own cache: one may learn of the last broker to register a moment later.
    let cluster = await client.describeCluster();
    for (let tries = 0; cluster.brokers.length < 3 && tries < 50; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      cluster = await client.describeCluster();
    }
    const configs = await client.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: 4, name: '1', configNames: ['min.insync.replicas', 'default.replication.factor'] }],
    });
    await client.disconnect();
    expect(cluster.brokers.map((b) => b.port).sort()).toEqual([19592, 19593, 19594]);
    const entries = Object.fromEntries(configs.resources[0]!.configEntries.map((e) => [e.configName, e.configValue]));
    expect(entries).toEqual({ 'min.insync.replicas': '2', 'default.replication.factor': '3' });

    const cleaned = await runInfraScript('stop', ['--clean', '--data-dir', dataDir]);
    expect(cleaned.code, cleaned.stderr).toBe(0);
    for (const port of [19592, 19593, 19594, 20592, 20593, 20594]) expect(listening(port)).toBe(false);
    expect(existsSync(dataDir)).toBe(false);
  });

  it('starts a secure 3-broker cluster: SCRAM over TLS gets in, with all three brokers replicating; plaintext and a wrong password do not', async () => {
    const dataDir = freshDataDir();
    const port = ownBrokerPorts.secureCluster;
    const result = await runInfraScript('start', ['--secure', '--nodes', '3', '--port', String(port), '--data-dir', dataDir, '--timeout', '180']);
    expect(result.code, result.stderr).toBe(0);
    const bootstrap = result.stdout.split('\n').at(-1)!;
    expect(result.stderr).toMatch(/users and passwords: broker admin worker server reader producer/);
    const secrets = join(dataDir, 'secrets');
    // kafkajs' default retries: a broker may learn of the new topic a moment after the one that created it.
    const secure = (password: string) =>
      new Kafka({ clientId: 'infra-test', brokers: bootstrap.split(','), logLevel: logLevel.NOTHING, ssl: { ca: [readFileSync(join(secrets, 'ca.pem'), 'utf8')] }, sasl: { mechanism: 'scram-sha-512', username: 'admin', password } });
    const kafka = secure(readFileSync(join(secrets, 'admin.password'), 'utf8').trim());
    const client = kafka.admin();
    await client.connect();
    try {
      // A topic replicated 3 times with min.insync.replicas 2: acks=all writes need the brokers' own SASL_SSL traffic.
      await createTopics(client, [{ topic: 'secured', numPartitions: 3 }]);
      const producer = kafka.producer();
      await producer.connect();
      await producer.send({ topic: 'secured', acks: -1, messages: Array.from({ length: 30 }, (_, i) => ({ value: `v${i}` })) });
      await producer.disconnect();
      const [metadata] = (await client.fetchTopicMetadata({ topics: ['secured'] })).topics;
      expect(metadata!.partitions.every((p) => p.replicas.length === 3 && p.isr.length === 3)).toBe(true);
    } finally {
      await client.disconnect();
    }
    const refused = async (extra: object) => {
      const probe = new Kafka({ clientId: 'infra-test', brokers: bootstrap.split(','), logLevel: logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 2_000, ...extra }).admin();
      await expect(probe.connect().then(() => probe.describeCluster())).rejects.toThrow();
      await probe.disconnect().catch(() => {});
    };
    await refused({});
    await refused({ ssl: { ca: [readFileSync(join(secrets, 'ca.pem'), 'utf8')] }, sasl: { mechanism: 'scram-sha-512', username: 'admin', password: 'not-the-password' } });

    const cleaned = await runInfraScript('stop', ['--clean', '--data-dir', dataDir]);
    expect(cleaned.code, cleaned.stderr).toBe(0);
    for (let i = 0; i < 3; i++) expect(listening(port + i)).toBe(false);
  });

  it('names a port that is already taken, and who holds it', async () => {
    const port = 19792;
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    try {
      const result = await runInfraScript('start', ['--port', String(port), '--data-dir', freshDataDir()]);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain(`port ${port} on 127.0.0.1 is already taken (by `);
      expect(result.stderr).toContain(`pid ${process.pid})`);
    } finally {
      server.close();
    }
  });

  it('gives up on a broker that does not get ready in time, with its log tail', async () => {
    const dataDir = freshDataDir();
    const result = await runInfraScript('start', ['--port', '19892', '--data-dir', dataDir, '--timeout', '1']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/did not answer metadata requests at 127\.0\.0\.1:19892 within 1s/);
    expect(result.stderr).toMatch(/last 40 lines of .*broker\.log/);
    expect(listening(19892)).toBe(false);
  });

  it('rejects bad arguments by name', async () => {
    const nodes = await runInfraScript('start', ['--nodes', '2']);
    expect(nodes.code).not.toBe(0);
    expect(nodes.stderr).toContain("--nodes must be 1 or 3, got '2'");
    const port = await runInfraScript('start', ['--port', 'http']);
    expect(port.stderr).toContain("--port must be a number from 1024 to 64533, got 'http'");
    const delay = await runInfraScript('start', ['--group-delay-ms', '3s']);
    expect(delay.code).not.toBe(0);
    expect(delay.stderr).toContain("--group-delay-ms must be a number of milliseconds (0 or more), got '3s'");
  });
});
