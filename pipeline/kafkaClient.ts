import { Kafka, logLevel, type LogEntry, type logCreator } from 'kafkajs';

// After a commit, the broker briefly answers the next transaction's AddPartitionsToTxn with
// CONCURRENT_TRANSACTIONS, and kafkajs retries it, successfully, after logging it as an ERROR.
const retriedNoise = /concurrent operation on the same transaction/;

/** kafkajs' console logging, less the errors it logs and then retries away. */
const quietLogCreator: logCreator = () => ({ namespace, level, log }: LogEntry) => {
  const { message, ...extra } = log;
  if (retriedNoise.test(String(extra.error ?? message))) return;
  const line = JSON.stringify({ level: logLevel[level], logger: 'kafkajs', namespace, message, ...extra });
  if (level <= logLevel.ERROR) console.error(line);
  else console.warn(line);
};

/** The Kafka client every streamgrad process uses: one place for client ids and logging. */
export function createKafka(options: { clientId: string; brokers: readonly string[] }): Kafka {
  return new Kafka({ clientId: options.clientId, brokers: [...options.brokers], logLevel: logLevel.WARN, logCreator: quietLogCreator });
}
