import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Kafka, logLevel, Partitioners, type ICustomPartitioner, type KafkaConfig, type LogEntry, type logCreator, type SASLOptions } from 'kafkajs';
import type { Logger } from 'pino';
import { ConfigError } from '../../schemas/errors.js';
import type { ExperimentConfig } from './config.js';
import { AuthorizationError, authorizationFailureIn, BrokerUnreachableError, errorChain } from './errors.js';
import { rootLogger } from './log.js';
import { readSecret, type SecretSource } from './secrets.js';

// After a commit, the broker briefly answers the next transaction's AddPartitionsToTxn with
// CONCURRENT_TRANSACTIONS, and kafkajs retries it, successfully, after logging it as an ERROR.
// Likewise a heartbeat during a rebalance, and a coordinator that is still loading: kafkajs rejoins or retries.
// And a lane's OffsetFetch right after a rebalance, while the partition's last owner's transaction is still open:
// UNSTABLE_OFFSET_COMMIT (KIP-447), which kafkajs retries until that transaction ends (a dozen lines per 2-worker run).
const retriedNoise = /concurrent operation on the same transaction|group is rebalancing|coordinator is loading|not the correct coordinator|coordinator is not available|unstable offsets that need to be cleared/;

// Right after `run` creates its topics, a Metadata request can reach a broker that has not heard of them yet
// (UNKNOWN_TOPIC_OR_PARTITION): kafkajs asks again. A topic that stays missing fails the call that needed it, by name.
const newTopicNoise = (message: string, text: string) => message.includes('Response Metadata') && /does not host this topic-partition/.test(text);

// What a rebalance does to the transaction of a lane taken away mid-commit: the partition's next owner fences its
// producer (old epoch), and the producer closed under a request drops that request's answer, or fails the request
// (write after end). The lane's checkpoint handles all three and the worker says what became of the lane ("… ended:
// revoked by a rebalance"), so kafkajs' own ERROR and WARN lines about them are debug detail.
const handledByTheCheckpoint = /operation with an old epoch|producer.*fenced|response without match|write after end/i;

// kafkajs warns about its v2 partitioner change on every producer; streamgrad never used the old one.
process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';

/**
 * The last authorization failure a broker answered this process with, as kafkajs logged it. kafkajs turns a denied
 * FindCoordinator (no ACL on the group) into "Failed to find group coordinator" and keeps only its log line.
 */
let lastDenial: string | undefined;

/** kafkajs' levels as the logger's: its INFO entries (joins, leaves, every lane's consumer) are debug detail here. */
const levelOfKafkajs: Record<number, 'error' | 'warn' | 'debug' | 'trace'> = { [logLevel.ERROR]: 'error', [logLevel.WARN]: 'warn', [logLevel.INFO]: 'debug', [logLevel.DEBUG]: 'trace' };

/** The kafkajs level that lets through what `logger` shows (see {@link levelOfKafkajs}). */
function kafkajsLevelFor(logger: Logger): logLevel {
  const rank = logger.levelVal;
  if (rank <= 10) return logLevel.DEBUG;
  if (rank <= 20) return logLevel.INFO;
  if (rank <= 40) return logLevel.WARN;
  if (rank <= 60) return logLevel.ERROR;
  return logLevel.NOTHING;
}

/** kafkajs' logs, through `logger` (field `logger: kafkajs`), less the errors it logs and then retries away. */
function kafkajsLogCreator(logger: Logger): logCreator {
  const library = logger.child({ logger: 'kafkajs' });
  return () => ({ namespace, level, log }: LogEntry) => {
    const { message, timestamp: _timestamp, logger: _logger, ...extra } = log;
    if (/authorization failed/i.test(String(extra.error ?? ''))) lastDenial = String(extra.error);
    // The consumer's crash that follows names the group it could not find a coordinator for.
    else if (lastDenial !== undefined && typeof extra.groupId === 'string' && /group authorization/i.test(lastDenial) && !lastDenial.includes(' on group ')) lastDenial += ` on group ${extra.groupId}`;
    const text = String(extra.error ?? message);
    if (retriedNoise.test(text) || newTopicNoise(String(message), text)) return;
    library[handledByTheCheckpoint.test(text) ? 'debug' : (levelOfKafkajs[level] ?? 'warn')]({ component: namespace, ...extra }, message);
  };
}

/** Where the brokers are and how to connect to them: the `brokers` and `security` of an experiment. */
export type KafkaAccess = Pick<ExperimentConfig, 'brokers' | 'security'>;

/** A PEM file's text; the error names the setting (`field`) and what the file holds. */
export function readPem(file: string, field: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(field, `cannot read ${file} (${what}): ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/** The client key of mutual TLS and its passphrase, checked here: a wrong passphrase is named before any connection. */
function clientKey(file: string, password: SecretSource | undefined, field: string): { key: string; passphrase?: string } {
  const key = readPem(file, `${field}.keyFile`, 'the client key');
  const passphrase = password === undefined ? undefined : readSecret(password, `${field}.keyPassword`, `the passphrase of ${file}`);
  try {
    createPrivateKey({ key, format: 'pem', ...(passphrase === undefined ? {} : { passphrase }) });
  } catch (error) {
    const hint = passphrase === undefined ? 'if it is encrypted, give its passphrase in keyPassword' : 'is keyPassword its passphrase?';
    throw new ConfigError(`${field}.keyFile`, `cannot read the private key in ${file} (${hint}): ${(error as Error).message}`);
  }
  return passphrase === undefined ? { key } : { key, passphrase };
}

/** kafkajs' `ssl` and `sasl` options for `security`, with files and secrets read now; errors name the field. */
function securityOptions(security: KafkaAccess['security']): Pick<KafkaConfig, 'ssl' | 'sasl'> {
  const tls = security?.tls;
  const sasl = security?.sasl;
  const field = 'config.security';
  const ssl =
    tls === undefined || !tls.enabled
      ? undefined
      : {
          ...(tls.caFile === undefined ? {} : { ca: [readPem(tls.caFile, `${field}.tls.caFile`, 'the CA certificates')] }),
          ...(tls.certFile === undefined ? {} : { cert: readPem(tls.certFile, `${field}.tls.certFile`, 'the client certificate') }),
          ...(tls.keyFile === undefined ? {} : clientKey(tls.keyFile, tls.keyPassword, `${field}.tls`)),
        };
  const password = sasl === undefined ? undefined : readSecret(sasl.password, `${field}.sasl.password`, `the password of Kafka user '${sasl.username}'`);
  // kafkajs types `sasl` as a union keyed by the mechanism; the three the schema allows take a username and password.
  const saslOptions = sasl === undefined ? undefined : ({ mechanism: sasl.mechanism, username: sasl.username, password } as SASLOptions);
  return { ...(ssl === undefined ? {} : { ssl }), ...(saslOptions === undefined ? {} : { sasl: saslOptions }) };
}

/**
 * The Kafka client every streamgrad process uses: one place for client ids, TLS, SASL and logging (kafkajs' own
 * entries go through `logger`, the process's by default). Retries keep
 * kafkajs' defaults: a client-wide retry setting would also cap the idempotent producers' retries, which kafkajs
 * keeps unlimited for exactly-once.
 */
export function createKafka(access: KafkaAccess, clientId: string, logger: Logger = rootLogger()): Kafka {
  return new Kafka({ clientId, brokers: [...access.brokers], ...securityOptions(access.security), logLevel: kafkajsLevelFor(logger), logCreator: kafkajsLogCreator(logger) });
}

/** TLS errors that mean the broker's certificate is not trusted by the configured CAs, or not for this address. */
const untrustedCertificateCodes = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** The error codes along `error`'s chain (kafkajs wraps the socket's error). */
function errorCodes(error: unknown): string[] {
  return errorChain(error).flatMap((at) => (typeof at.code === 'string' ? [at.code] : []));
}

/**
 * Why a connection to the brokers failed, in one line that names the cause and the setting to look at: refused
 * credentials, an untrusted certificate, TLS to a plaintext listener, or a broker that wants TLS or SASL.
 */
function describeConnectionFailure(cause: unknown, security: KafkaAccess['security']): string {
  const error = cause as Error;
  const message = error?.message ?? String(cause);
  const codes = errorCodes(cause);
  const said = `${message} ${codes.join(' ')}`;
  const tlsOn = security?.tls?.enabled === true;
  const sasl = security?.sasl;
  if (error?.name === 'KafkaJSSASLAuthenticationError') {
    const where = sasl === undefined ? '' : ` (password from ${sasl.password.env === undefined ? `file ${sasl.password.file}` : `environment variable ${sasl.password.env}`})`;
    return `the broker refused the credentials of user '${sasl?.username ?? '?'}' (SASL ${sasl?.mechanism ?? '?'}): check config.security.sasl.username and its password${where}. ${message}`;
  }
  const tlsCode = codes.find((code) => untrustedCertificateCodes.has(code));
  if (tlsCode !== undefined) {
    const ca = security?.tls?.caFile;
    const hint = tlsCode === 'ERR_TLS_CERT_ALTNAME_INVALID' ? "the broker's certificate is not issued for the address in config.brokers" : ca === undefined ? "set config.security.tls.caFile to the CA that signed the broker's certificate" : `the broker's certificate is not signed by a CA in ${ca} (config.security.tls.caFile)`;
    return `the broker's TLS certificate is not trusted (${tlsCode}): ${hint}`;
  }
  if (tlsOn && /before secure TLS connection was established|wrong version number|ECONNRESET/i.test(said)) {
    return `the broker closed the connection during the TLS handshake: is it a plaintext listener? (config.security.tls is on). ${message}`;
  }
  if (/Closed connection|ECONNRESET|socket hang up/i.test(said)) {
    const wants = tlsOn ? 'SASL authentication (config.security.sasl)' : sasl === undefined ? 'TLS (config.security.tls) or SASL authentication (config.security.sasl)' : 'TLS (config.security.tls)';
    return `the broker closed the connection at once: it probably requires ${wants}. ${message}`;
  }
  return message;
}

/**
 * Checks that a broker answers at `brokers` and accepts this client's TLS and credentials, quickly (a few seconds,
 * not kafkajs' default half minute of retries): a command fails with one clear line instead.
 */
export async function assertReachable(access: KafkaAccess): Promise<void> {
  const probe = new Kafka({ clientId: 'streamgrad-probe', brokers: [...access.brokers], ...securityOptions(access.security), logLevel: logLevel.NOTHING, connectionTimeout: 3_000, retry: { retries: 2, initialRetryTime: 200, maxRetryTime: 1_000 } });
  const admin = probe.admin();
  try {
    await admin.connect();
    await admin.describeCluster();
  } catch (cause) {
    throw new BrokerUnreachableError(access.brokers, describeConnectionFailure(cause, access.security), cause);
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/** How soon a client sees a partition added to a topic (`streamgrad scale`), in ms: its metadata's maximum age. */
export const partitionDiscoveryMs = 5_000;

/** A consumer's session timeout and the heartbeat interval that goes with it (a tenth, at least 500 ms). */
/** Device ids (string keys) remembered per topic by {@link cachedKeyPartitioner} before it starts afresh. */
const maxCachedKeys = 100_000;

/**
 * kafkajs' default (Java-compatible, murmur2) partitioner, with each string key's partition remembered per topic and
 * partition count: a producer of many records for few keys (devices) hashes each key once, not once per record.
 */
export const cachedKeyPartitioner: ICustomPartitioner = () => {
  const partitioner = Partitioners.DefaultPartitioner();
  const topics = new Map<string, { partitions: number; byKey: Map<string, number> }>();
  return (args) => {
    const { topic, partitionMetadata, message } = args;
    if (typeof message.key !== 'string' || (message.partition !== undefined && message.partition !== null)) return partitioner(args);
    let known = topics.get(topic);
    if (!known || known.partitions !== partitionMetadata.length || known.byKey.size >= maxCachedKeys) topics.set(topic, (known = { partitions: partitionMetadata.length, byKey: new Map() }));
    let partition = known.byKey.get(message.key);
    if (partition === undefined) known.byKey.set(message.key, (partition = partitioner(args)));
    return partition;
  };
};

export function groupTimings(sessionTimeoutMs: number): { readonly sessionTimeout: number; readonly heartbeatInterval: number } {
  return { sessionTimeout: sessionTimeoutMs, heartbeatInterval: Math.max(500, Math.floor(sessionTimeoutMs / 10)) };
}

/**
 * What to tell the user about a command that failed with `error`: an {@link AuthorizationError} when a broker denied
 * something on the way (named by the error chain, or by kafkajs' log when it hid the denial behind "Failed to find
 * group coordinator"), else `error` itself.
 */
export function explainFailure(error: unknown): unknown {
  const denied = authorizationFailureIn(error);
  if (denied !== undefined) return denied;
  const hidden = lastDenial !== undefined && errorChain(error).some((at) => /Failed to find group coordinator/.test(String(at.message)));
  return hidden ? new AuthorizationError(lastDenial!, error) : error;
}
