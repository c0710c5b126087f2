import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const infraDir = fileURLToPath(new URL('../../infra/kafka/', import.meta.url));

/** Where the test broker came from, in the order the harness tries them. */
export type BrokerSource = 'KAFKA_BROKERS' | 'testcontainers' | 'infra';

/** A broker for one test run: its bootstrap list and how to release it. */
export interface TestBroker {
  readonly brokers: string;
  readonly source: BrokerSource;
  /** The broker's process, where the harness started it (an infra/ instance of one node): for its CPU share in benches. */
  readonly pid?: number;
  stop(): Promise<void>;
}

/** The harness's own infra/ instance: its own port and data dir, so it never touches a broker the user runs. */
export const infraTestInstance = {
  port: Number(process.env.STREAMGRAD_TEST_KAFKA_PORT ?? 19392),
  dataDir: `${infraDir}.data/test`,
} as const;

/**
 * The first ports of the brokers that tests start for themselves (broker i on port + i, its controller 1,000 above),
 * apart from one another and from test/infra/scripts.test.ts (19492, 19592–19594, 19792, 19892) and the run's broker.
 */
export const ownBrokerPorts = { qualityBench: 19362, zombie: 19582, outage: 19482, outageCluster: 19682, chaosOutage: 19472, chaosOutageCluster: 19652, chaosIngest: 19442, secure: 19172, secureCluster: 19992 } as const;

/**
 * A broker with Kafka's default `group.initial.rebalance.delay.ms` (3 s), where workers started together join their
 * group together, as on a production broker (the harness's own instance sets 0 for fast tests: there the first worker
 * to join takes every partition until the next one's rebalance). `KAFKA_BROKERS`, when set, is used as it is.
 */
export async function acquireRealisticBroker(): Promise<TestBroker> {
  return brokerFromEnv() ?? startInfraInstance(ownBrokerPorts.qualityBench, `${infraDir}.data/realistic`, ['--group-delay-ms', '3000', '--timeout', '180']);
}

/** `KAFKA_BROKERS`, when set: a broker the caller neither starts nor stops. */
function brokerFromEnv(): TestBroker | undefined {
  const fromEnv = process.env.KAFKA_BROKERS?.trim();
  return fromEnv ? { brokers: fromEnv, source: 'KAFKA_BROKERS', stop: async () => {} } : undefined;
}

/** An infra/ instance on `port` in `dataDir`, started for the run and stopped (and cleaned) after it. */
async function startInfraInstance(port: number, dataDir: string, args: readonly string[] = []): Promise<TestBroker> {
  const started = await runInfraScriptOrThrow('start', ['--port', String(port), '--data-dir', dataDir, ...args]);
  // A broker this run found running belongs to another run (two test runs at once in one checkout): that run stops it.
  const ours = !/reusing it/.test(started.stderr);
  const pid = Number(readFileSync(`${dataDir}/node1/pid`, 'utf8').trim());
  return {
    brokers: started.stdout.split('\n').at(-1) ?? '',
    source: 'infra',
    ...(Number.isInteger(pid) && pid > 0 ? { pid } : {}),
    stop: async () => {
      if (ours) await runInfraScriptOrThrow('stop', ['--clean', '--data-dir', dataDir]);
    },
  };
}

/** What an infra/kafka script printed, and how it exited. */
export interface InfraScriptResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

type InfraService = 'kafka' | 'mqtt';

/** The instances (by data dir) this process started through {@link runInfraScript} and has not stopped yet. */
const startedInstances = new Map<string, InfraService>();

/** Runs an infra/kafka (or infra/mqtt) script to completion; never throws for a non-zero exit. */
export async function runInfraScript(script: 'start' | 'stop', args: readonly string[], service: InfraService = 'kafka'): Promise<InfraScriptResult> {
  const result = await runScript(script, args, service);
  const at = args.indexOf('--data-dir');
  const dataDir = at >= 0 ? args[at + 1] : undefined;
  // An instance that was running already ("reusing it") belongs to whoever started it.
  if (dataDir && script === 'start' && result.code === 0 && !/reusing it/.test(result.stderr)) startedInstances.set(dataDir, service);
  if (dataDir && script === 'stop') startedInstances.delete(dataDir);
  return result;
}

async function runScript(script: 'start' | 'stop', args: readonly string[], service: InfraService): Promise<InfraScriptResult> {
  try {
    const { stdout, stderr } = await run('bash', [`${infraDir.replace(/kafka\/$/, `${service}/`)}${script}`, ...args], { maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout: stdout.trim(), stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : 1, stdout: failed.stdout?.trim() ?? '', stderr: failed.stderr ?? String(error) };
  }
}

/**
 * Stops (and cleans) every instance this process started and did not stop: a test that timed out never reaches its
 * own `finally`, and its brokers would outlive the run on the ports the next run needs. Returns their data dirs.
 */
export async function stopLeftBehindInstances(): Promise<string[]> {
  const left = [...startedInstances];
  for (const [dataDir, service] of left) await runInfraScript('stop', ['--clean', '--data-dir', dataDir], service);
  return left.map(([dataDir]) => dataDir);
}

/** Starts a Kafka instance of a test's own with infra/kafka/start `args`; its bootstrap brokers, or an error with the script's output. */
export async function startOwnKafka(args: readonly string[]): Promise<string[]> {
  const started = await runInfraScript('start', args);
  if (started.code !== 0) throw new Error(`infra/kafka/start failed: ${started.stderr}`);
  return started.stdout.split('\n').at(-1)!.split(',');
}

async function runInfraScriptOrThrow(script: 'start' | 'stop', args: readonly string[]): Promise<InfraScriptResult> {
  const result = await runInfraScript(script, args);
  process.stderr.write(result.stderr);
  if (result.code !== 0) throw new Error(`infra/kafka/${script} ${args.join(' ')} exited ${result.code}`);
  return result;
}

async function dockerEngineAnswers(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

/**
 * Picks the broker for a test run: `KAFKA_BROKERS` when set, else a
 * `@testcontainers/kafka` container when a Docker engine answers, else the
 * infra/ KRaft broker, started for the run and stopped (and cleaned) after it.
 */
export async function acquireTestBroker(): Promise<TestBroker> {
  const fromEnv = brokerFromEnv();
  if (fromEnv) return fromEnv;
  if (await dockerEngineAnswers()) {
    const { KafkaContainer } = await import('@testcontainers/kafka');
    const container = await new KafkaContainer('confluentinc/cp-kafka:7.9.0')
      .withKraft()
      .withEnvironment({
        KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: '1',
        KAFKA_AUTO_CREATE_TOPICS_ENABLE: 'false',
      })
      .start();
    return {
      brokers: `${container.getHost()}:${container.getMappedPort(9093)}`,
      source: 'testcontainers',
      stop: async () => {
        await container.stop();
      },
    };
  }
  return startInfraInstance(infraTestInstance.port, infraTestInstance.dataDir);
}
