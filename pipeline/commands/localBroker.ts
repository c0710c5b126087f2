import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { packageInfo } from '../common/packageInfo.js';

const run = promisify(execFile);

/** A broker to talk to, and how to let go of it. */
export interface BrokerHandle {
  readonly brokers: string[];
  /** True when this call started the local broker (and `release` stops it). */
  readonly started: boolean;
  release(): Promise<void>;
}

/** The bootstrap addresses in KAFKA_BROKERS, if set. */
export function brokersFromEnv(): string[] | undefined {
  const value = process.env.KAFKA_BROKERS?.trim();
  return value ? value.split(',').map((b) => b.trim()).filter((b) => b.length > 0) : undefined;
}

const infraScript = (name: 'start' | 'stop', service: 'kafka' | 'mqtt' = 'kafka') => join(packageInfo().root, 'infra', service, name);

/** Starts the local KRaft broker from `infra/kafka` (idempotent) and returns its bootstrap addresses. */
export async function startLocalBroker(): Promise<{ brokers: string[]; alreadyRunning: boolean }> {
  const { stdout, stderr } = await run('bash', [infraScript('start')], { maxBuffer: 16 * 1024 * 1024 }).catch((error: { stderr?: string; message: string }) => {
    throw new Error(`infra/kafka/start failed: ${(error.stderr ?? error.message).trim().split('\n').slice(-5).join('\n')}`);
  });
  return { brokers: stdout.trim().split('\n').at(-1)!.split(','), alreadyRunning: stderr.includes('already running') };
}

/** Stops the local broker from `infra/kafka`; `clean` deletes its data too. */
export async function stopLocalBroker(clean = false): Promise<void> {
  await run('bash', [infraScript('stop'), ...(clean ? ['--clean'] : [])]);
}

/**
 * The broker for a one-command job: KAFKA_BROKERS when set, else the local
 * broker, started here if it is not running (and stopped by `release` if it was started here).
 */
export async function acquireBroker(log: (line: string) => void): Promise<BrokerHandle> {
  const fromEnv = brokersFromEnv();
  if (fromEnv) return { brokers: fromEnv, started: false, release: async () => {} };
  log('starting the local Kafka broker (infra/kafka/start) …');
  const { brokers, alreadyRunning } = await startLocalBroker();
  return { brokers, started: !alreadyRunning, release: async () => (alreadyRunning ? undefined : stopLocalBroker()) };
}

/** An MQTT broker for a one-command job: MQTT_URL when set, else the local Mosquitto (`infra/mqtt/start`), stopped by `release` if started here. */
export async function acquireMqttBroker(log: (line: string) => void): Promise<{ readonly url: string; release(): Promise<void> }> {
  const fromEnv = process.env.MQTT_URL?.trim();
  if (fromEnv) return { url: fromEnv, release: async () => {} };
  log('starting the local MQTT broker (infra/mqtt/start) …');
  const { stdout, stderr } = await run('bash', [infraScript('start', 'mqtt')], { maxBuffer: 16 * 1024 * 1024 }).catch((error: { stderr?: string; message: string }) => {
    throw new Error(`infra/mqtt/start failed: ${(error.stderr ?? error.message).trim().split('\n').slice(-5).join('\n')}`);
  });
  const alreadyRunning = stderr.includes('already running');
  return { url: stdout.trim().split('\n').at(-1)!, release: async () => void (alreadyRunning ? undefined : await run('bash', [infraScript('stop', 'mqtt')])) };
}
