import { pino, type Level, type Logger } from 'pino';
import { ConfigError } from '../../schemas/errors.js';

/**
 * The one home of streamgrad's logs: pino, one root logger per process, a child per role with the fields that say
 * who logged (`namespace`, `role`, `worker`, `server`, `shard`). Two formats, chosen by `STREAMGRAD_LOG_FORMAT`:
 * `human` (the default), a line `[worker w1] message` per entry for terminals, and `json`, pino's JSON lines for log
 * collectors. `STREAMGRAD_LOG_LEVEL` picks the level (default `info`). Secrets never reach a line: no message
 * interpolates one, and fields named like one are redacted.
 */

export const logFormats = ['human', 'json'] as const;
export type LogFormat = (typeof logFormats)[number];
const logLevels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export interface LogSettings {
  readonly format: LogFormat;
  readonly level: Level | 'silent';
}

/** The settings from the environment; a value that is not allowed is a ConfigError naming the variable. */
export function logSettings(env: NodeJS.ProcessEnv = process.env): LogSettings {
  const pick = <T extends string>(name: string, allowed: readonly T[], fallback: T): T => {
    const value = env[name]?.trim().toLowerCase();
    if (value === undefined || value === '') return fallback;
    if (!(allowed as readonly string[]).includes(value)) throw new ConfigError(name, `'${env[name]}' is not one of ${allowed.join(', ')}`);
    return value as T;
  };
  return { format: pick('STREAMGRAD_LOG_FORMAT', logFormats, 'human'), level: pick('STREAMGRAD_LOG_LEVEL', logLevels, 'info') };
}

/** Fields whose values are never written, whatever logs them. */
export const redactedPaths = ['password', '*.password', 'sasl.password', '*.sasl.password', 'secret', '*.secret', 'ssl.key', '*.ssl.key'];

/** Who logged: the fields every line of a role's logger carries. */
export interface LogIdentity {
  readonly role: string;
  readonly namespace?: string | undefined;
  readonly worker?: string | undefined;
  readonly server?: string | undefined;
}

/** Fields of one entry (a shard, a partition, an error code …). */
export type LogFields = Readonly<Record<string, unknown>>;

/** What the processes and commands log through: a message and, optionally, fields. */
export type LogFn = (message: string, fields?: LogFields) => void;

interface Entry {
  level?: number;
  msg?: string;
  role?: string;
  worker?: string;
  server?: string;
  logger?: string;
  component?: string;
  [field: string]: unknown;
}

/** Who logged, as the human format's prefix: `[worker w1]`, `[ps vm-1234]`, `[run]`. */
function prefixOf(entry: Entry): string {
  const id = entry.worker ?? entry.server;
  return `[${entry.role ?? 'streamgrad'}${id === undefined ? '' : ` ${id}`}]`;
}

const shownInPrefix = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'role', 'worker', 'server', 'namespace', 'logger', 'component', 'shard']);

/** One human line for one JSON entry: the prefix and the message; a library's entries also show their fields. */
export function humanLine(json: string): string {
  const entry = JSON.parse(json) as Entry;
  const level = entry.level !== undefined && entry.level >= 50 ? 'ERROR: ' : entry.level === 40 && entry.logger !== undefined ? 'WARN: ' : '';
  if (entry.logger === undefined) return `${prefixOf(entry)} ${level}${entry.msg ?? ''}`;
  const extra = Object.fromEntries(Object.entries(entry).filter(([key]) => !shownInPrefix.has(key)));
  return `${prefixOf(entry)} ${level}${entry.logger} ${entry.component ?? ''}: ${entry.msg ?? ''}${Object.keys(extra).length > 0 ? ` ${JSON.stringify(extra)}` : ''}`;
}

/** A pino logger with `settings`, writing synchronously to `write` (stderr by default), so nothing is lost at exit. */
export function createLogger(settings: LogSettings, write: (line: string) => void = (line) => process.stderr.write(line)): Logger {
  const stream = { write: settings.format === 'json' ? write : (json: string) => write(`${humanLine(json)}\n`) };
  return pino({ level: settings.level, base: { pid: process.pid }, redact: { paths: redactedPaths, censor: '[redacted]' } }, stream);
}

let root: Logger | undefined;

/** The process's root logger, made on first use from the environment's settings. */
export function rootLogger(): Logger {
  root ??= createLogger(logSettings());
  return root;
}

/** The logger of a role in this process: its lines carry `identity`. */
export function roleLogger(identity: LogIdentity, parent: Logger = rootLogger()): Logger {
  const fields = Object.fromEntries(Object.entries(identity).filter(([, value]) => value !== undefined));
  return parent.child(fields);
}

/** A {@link LogFn} that logs at info level through `logger`. */
export function logFnOf(logger: Logger): LogFn {
  return (message, fields) => (fields === undefined ? logger.info(message) : logger.info(fields, message));
}

/** Whether this process writes JSON lines (then a parent relays its children's lines as they are). */
export function loggingJson(): boolean {
  try {
    return logSettings().format === 'json';
  } catch {
    return false;
  }
}
