import { ConfigError, describeOrigin, StreamgradError, type RecordOrigin } from '../../schemas/errors.js';
import type { ModelSnapshot } from '../../schemas/types.js';
import type { BackendName } from './backend.js';

/** The errors of the processes: what a command meets before or while it runs, and the exit code each one means. */

/** A command names an experiment namespace that has no topics on the broker. */
export class NamespaceError extends StreamgradError {
  constructor(readonly namespace: string, detail: string) {
    super('NAMESPACE', `unknown namespace '${namespace}': ${detail}`, { retriable: false });
  }
}

/** No broker answers at the configured bootstrap addresses. */
export class BrokerUnreachableError extends StreamgradError {
  constructor(readonly brokers: readonly string[], detail: string, cause?: unknown) {
    super('BROKER', `cannot connect to Kafka at ${brokers.join(',')} (config brokers or KAFKA_BROKERS): ${detail}`, { retriable: true, cause });
  }
}

/** The first connection to the MQTT broker of `ingest.mqtt` failed: refused credentials, an untrusted certificate, no broker. */
export class MqttUnreachableError extends StreamgradError {
  constructor(readonly url: string, detail: string, cause?: unknown) {
    super('MQTT', `cannot connect to the MQTT broker at ${url} (config.ingest.mqtt.url): ${detail}`, { retriable: true, cause });
  }
}

/** The brokers denied an operation: the principal lacks an ACL (see `streamgrad acls`). */
export class AuthorizationError extends StreamgradError {
  constructor(detail: string, cause?: unknown) {
    super('AUTHORIZATION', `Kafka denied it: ${detail}. Grant the role's ACLs (streamgrad acls --role ROLE --principal User:NAME --apply, as an admin), or ask the cluster's admin`, { retriable: false, cause });
  }
}

/** One error of a chain, as far as streamgrad reads it: kafkajs nests errors in `cause`, `originalError` and `errors`. */
export interface ChainedError {
  readonly name?: unknown;
  readonly message?: unknown;
  readonly code?: unknown;
  readonly type?: unknown;
  readonly topic?: unknown;
  readonly groupId?: unknown;
}

/** `error` and the errors it wraps, breadth first (at most 32). */
export function errorChain(error: unknown): ChainedError[] {
  const chain: ChainedError[] = [];
  const pending: unknown[] = [error];
  while (pending.length > 0 && chain.length < 32) {
    const at = pending.shift() as (ChainedError & { errors?: unknown; cause?: unknown; originalError?: unknown }) | null | undefined;
    if (at === null || typeof at !== 'object') continue;
    chain.push(at);
    if (Array.isArray(at.errors)) pending.push(...at.errors);
    pending.push(at.cause, at.originalError);
  }
  return chain;
}

/** The authorization failure in `error` or the errors it wraps, as an {@link AuthorizationError} naming the failure and the topic or group. */
export function authorizationFailureIn(error: unknown): AuthorizationError | undefined {
  for (const at of errorChain(error)) {
    if (at instanceof AuthorizationError) return at;
    if (typeof at.type === 'string' && at.type.endsWith('_AUTHORIZATION_FAILED')) {
      const on = typeof at.topic === 'string' ? ` on topic ${at.topic}` : typeof at.groupId === 'string' ? ` on group ${at.groupId}` : '';
      return new AuthorizationError(`${at.type}${on} (${String(at.message)})`, error);
    }
  }
  return undefined;
}

/** A backend that was asked for by name and could not be started. */
export class BackendError extends StreamgradError {
  constructor(readonly backend: BackendName | 'auto', detail: string, cause?: unknown) {
    super('BACKEND', `cannot use the '${backend}' TensorFlow.js backend: ${detail}`, { retriable: false, cause });
  }
}

/** A snapshot that does not fit the worker's model: a different spec, or another experiment in the same namespace. */
export class SnapshotMismatchError extends StreamgradError {
  constructor(snapshot: ModelSnapshot, detail: string) {
    super('SNAPSHOT_MISMATCH', `snapshot ${snapshot.namespace} shard ${snapshot.shard} version ${snapshot.version} does not fit this model: ${detail}`, { retriable: false });
  }
}

/** A record of `<ns>.model` that is not a snapshot: a snapshot read past it would be stale, a shard restored past it wrong. */
export class SnapshotDecodeError extends StreamgradError {
  constructor(readonly origin: RecordOrigin, detail: string) {
    super('SNAPSHOT_DECODE', `cannot decode the snapshot at ${describeOrigin(origin)}: ${detail}`, { retriable: false });
  }
}

/**
 * The exit code of a command that failed with `error`: 2 when it cannot run as given (a bad setting or option, an
 * unknown namespace, no broker, no backend, an operation the brokers deny), 1 when it failed while running.
 */
export function exitCodeOf(error: unknown): 1 | 2 {
  const cannotRun = [ConfigError, NamespaceError, BrokerUnreachableError, MqttUnreachableError, BackendError, AuthorizationError];
  return cannotRun.some((kind) => error instanceof kind) ? 2 : 1;
}
