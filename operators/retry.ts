import { StreamgradError } from '../schemas/errors.js';

/** How {@link withRetry} backs off. Times in ms. */
export interface RetryOptions {
  /** Attempts after the first. Default 5. */
  readonly retries?: number;
  /** The first backoff ceiling. Default 100 ms. */
  readonly initialDelayMs?: number;
  /** The largest backoff ceiling. Default 5,000 ms. */
  readonly maxDelayMs?: number;
  /** Called before each retry, e.g. to log it. */
  readonly onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  /** Which errors to retry. Default {@link isRetriable}. */
  readonly retriable?: (error: unknown) => boolean;
  /** Stop retrying once this many ms have passed since the first attempt, whatever `retries` says. */
  readonly deadlineMs?: number;
}

/**
 * Whether a retry can help. Programmer errors (TypeError, RangeError, …) never;
 * streamgrad and kafkajs errors say so themselves (`retriable`); anything else, no.
 */
export function isRetriable(error: unknown): boolean {
  if (error instanceof TypeError || error instanceof RangeError || error instanceof ReferenceError || error instanceof SyntaxError) return false;
  if (error instanceof StreamgradError) return error.retriable;
  return typeof error === 'object' && error !== null && (error as { retriable?: unknown }).retriable === true;
}

// kafkajs gives up on these after its own few retries, though a broker that comes back heals them.
const healingKafkaErrors = new Set(['KafkaJSNumberOfRetriesExceeded', 'KafkaJSConnectionError', 'KafkaJSConnectionClosedError', 'KafkaJSRequestTimeoutError', 'KafkaJSBrokerNotFound', 'KafkaJSNoBrokerAvailableError', 'KafkaJSLockTimeout', 'KafkaJSTimeout', 'KafkaJSGroupCoordinatorNotFound', 'KafkaJSMetadataNotLoaded', 'KafkaJSTopicMetadataNotLoaded']);

/**
 * Whether waiting can heal the error: a retriable one, or one kafkajs raised after using up its own retries on
 * a broker that was away (connection refused or closed, timeouts, no coordinator yet). A broker outage ends
 * with the broker back; an error of the request itself (fenced, unauthorized, too large) does not heal.
 */
export function isTransient(error: unknown): boolean {
  if (isRetriable(error)) return true;
  if (typeof error !== 'object' || error === null) return false;
  const { name, cause, originalError } = error as { name?: unknown; cause?: unknown; originalError?: unknown };
  if (typeof name === 'string' && healingKafkaErrors.has(name)) return true;
  const inner = cause ?? originalError;
  return inner !== undefined && inner !== error && isTransient(inner);
}

/** The backoff before retry `attempt` (1-based): exponential, with full jitter. */
export function backoffDelay(attempt: number, options: RetryOptions = {}, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxDelayMs ?? 5_000, (options.initialDelayMs ?? 100) * 2 ** (attempt - 1));
  return Math.round(random() * ceiling);
}

/**
 * The one place where streamgrad retries: runs `operation`, and while it fails
 * with an error that {@link isRetriable} accepts, waits a jittered exponential
 * backoff and runs it again, up to `retries` times. The last error is thrown.
 */
export async function withRetry<T>(operation: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const retries = options.retries ?? 5;
  const retriable = options.retriable ?? isRetriable;
  const deadline = options.deadlineMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + options.deadlineMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await operation(attempt);
    } catch (error) {
      if (attempt >= retries || Date.now() >= deadline || !retriable(error)) throw error;
      const delay = backoffDelay(attempt + 1, options);
      options.onRetry?.(error, attempt + 1, delay);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/**
 * How the Kafka source and sink wait for a broker that went away (an outage, a restart): retry `retriable` errors,
 * backing off to at most 5 s between attempts, until `deadlineMs` has passed.
 */
export function untilHealed(deadlineMs: number, retriable: (error: unknown) => boolean = isTransient): RetryOptions {
  return { retries: Number.POSITIVE_INFINITY, retriable, deadlineMs, maxDelayMs: 5_000 };
}
