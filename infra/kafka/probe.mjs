// Readiness probe for infra/kafka/start: exits 0 once the brokers at argv[2]
// answer a metadata request and at least argv[3] brokers are registered.
// A secure instance is probed over TLS with SCRAM-SHA-512: PROBE_CA_FILE, PROBE_USER, PROBE_PASSWORD_FILE.
import { readFileSync } from 'node:fs';
import kafkajs from 'kafkajs';

const [brokers = '127.0.0.1:19092', expected = '1'] = process.argv.slice(2);
const { PROBE_CA_FILE: caFile, PROBE_USER: username, PROBE_PASSWORD_FILE: passwordFile } = process.env;
const security = caFile
  ? { ssl: { ca: [readFileSync(caFile, 'utf8')] }, sasl: { mechanism: 'scram-sha-512', username, password: readFileSync(passwordFile, 'utf8').trim() } }
  : {};
const kafka = new kafkajs.Kafka({
  clientId: 'streamgrad-infra-probe',
  brokers: brokers.split(','),
  connectionTimeout: 1000,
  requestTimeout: 2000,
  retry: { retries: 0 },
  logLevel: kafkajs.logLevel.NOTHING,
  ...security,
});
const admin = kafka.admin();
try {
  await admin.connect();
  const cluster = await admin.describeCluster();
  if (cluster.brokers.length < Number(expected) || cluster.controller === null) {
    throw new Error(`${cluster.brokers.length} of ${expected} brokers registered`);
  }
  process.exitCode = 0;
} catch (error) {
  console.error(String(error));
  process.exitCode = 1;
} finally {
  await admin.disconnect().catch(() => {});
}
