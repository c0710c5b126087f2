import { Kafka, logLevel, type LogEntry, type logCreator } from 'kafkajs';
import { BrokerUnreachableError } from './errors.js';

// After a commit, the broker briefly answers the next transaction's AddPartitionsToTxn with
// CONCURRENT_TRANSACTIONS, and kafkajs retries it, successfully, after logging it as an ERROR.
// Likewise a heartbeat during a rebalance, and a coordinator that is still loading: kafkajs rejoins or retries.
const retriedNoise = /concurrent operation on the same transaction|group is rebalancing|coordinator is loading/;

// kafkajs warns about its v2 partitioner change on every producer; streamgrad never used the old one.
process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';

/** kafkajs' console logging, less the errors it logs and then retries away. */
const quietLogCreator: logCreator = () => ({ namespace, level, log }: LogEntry) => {
  const { message, ...extra } = log;
  if (retriedNoise.test(String(extra.error ?? message))) return;
  const line = JSON.stringify({ level: logLevel[level], logger: 'kafkajs', namespace, message, ...extra });
  if (level <= logLevel.ERROR) console.error(line);
  else console.warn(line);
};

/**
 * The Kafka client every streamgrad process uses: one place for client ids and logging. Retries keep kafkajs'
 * defaults: a client-wide retry setting would also cap the idempotent producers' retries, which kafkajs keeps
 * unlimited for exactly-once.
 */
export function createKafka(options: { clientId: string; brokers: readonly string[] }): Kafka {
  return new Kafka({ clientId: options.clientId, brokers: [...options.brokers], logLevel: logLevel.WARN, logCreator: quietLogCreator });
}

/**
 * Checks that a broker answers at `brokers`, quickly (a few seconds, not kafkajs'
 * default half minute of retries): a command fails with one clear line instead.
 */
export async function assertReachable(brokers: readonly string[]): Promise<void> {
  const probe = new Kafka({ clientId: 'streamgrad-probe', brokers: [...brokers], logLevel: logLevel.NOTHING, connectionTimeout: 3_000, retry: { retries: 2, initialRetryTime: 200, maxRetryTime: 1_000 } });
  const admin = probe.admin();
  try {
    await admin.connect();
    await admin.describeCluster();
  } catch (cause) {
    throw new BrokerUnreachableError(brokers, (cause as Error).message, cause);
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/** How soon a client sees a partition added to a topic (`streamgrad scale`), in ms: its metadata's maximum age. */
export const partitionDiscoveryMs = 5_000;

/** A consumer's session timeout and the heartbeat interval that goes with it (a tenth, at least 500 ms). */
export function groupTimings(sessionTimeoutMs: number): { readonly sessionTimeout: number; readonly heartbeatInterval: number } {
  return { sessionTimeout: sessionTimeoutMs, heartbeatInterval: Math.max(500, Math.floor(sessionTimeoutMs / 10)) };
}
