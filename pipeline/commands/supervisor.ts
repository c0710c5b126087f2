import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Kafka } from 'kafkajs';
import { ConfigError } from '../../schemas/errors.js';
import type { ExperimentConfig } from '../common/config.js';
import type { ConsoleDisplay } from '../common/console.js';
import { assertReachable, createKafka } from '../common/kafkaClient.js';
import { startSimulator, type Simulator, type SimulatorOptions } from './simulator.js';
import { progressLine, StatusReader, type StatusReport } from './status.js';
import { createTopics, ensureNamespaceTopics } from '../common/topics.js';

/** Options of {@link runExperiment}. */
export interface RunOptions {
  /** The experiment file: the children read it too. */
  readonly configFile: string;
  readonly config: ExperimentConfig;
  readonly workers: number;
  /** Also run the IoT simulator (the config's `simulator` block, with these overrides). */
  readonly simulate?: { readonly count?: number; readonly ratePerSecond?: number; readonly devices?: number };
  /** Stop after this long (default: on Ctrl-C or SIGTERM only). */
  readonly durationSeconds?: number;
  /** Stop when this settles, too. */
  readonly until?: Promise<unknown>;
  /** Called with every status reading (every `progressIntervalMs`, default 1 s). */
  readonly onReport?: (report: StatusReport) => void;
  readonly progressIntervalMs?: number;
  readonly display: ConsoleDisplay;
}

/** What a run did, for its summary. */
export interface RunSummary {
  readonly sent: number;
  readonly seconds: number;
  readonly status: StatusReport;
  readonly workers: number;
  /** Peak resident memory of each child (`ps`, `worker-1`, …) in MB, where the OS reports it (Linux). */
  readonly peakRssMb: Readonly<Record<string, number>>;
  /** CPU seconds (user + system) each child used, where the OS reports it (Linux). */
  readonly cpuSeconds: Readonly<Record<string, number>>;
}

/** CPU seconds (user + system) a process has used so far, on Linux; undefined elsewhere. */
export function cpuSecondsOf(pid: number | undefined): number | undefined {
  try {
    // Fields 14 and 15 of /proc/<pid>/stat, after the command name in parentheses, in clock ticks (100/s on Linux).
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** A process's peak resident set size (VmHWM) in MB, on Linux; undefined elsewhere or once it has exited. */
function peakRssMb(pid: number | undefined): number | undefined {
  try {
    const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

/** Where a running `streamgrad run` can be reached on this machine, for `streamgrad scale --workers`. */
export interface RunHandle {
  readonly pid: number;
  readonly control: string;
}

const handleFile = (namespace: string) => join(tmpdir(), 'streamgrad', `${namespace}.run.json`);

/** The running `streamgrad run` of `namespace` on this machine, if any. */
export function findRun(namespace: string): RunHandle | undefined {
  try {
    const handle = JSON.parse(readFileSync(handleFile(namespace), 'utf8')) as RunHandle;
    process.kill(handle.pid, 0);
    return handle;
  } catch {
    return undefined;
  }
}

/**
 * `node <this CLI>`: from sources (through the same loader, e.g. tsx) or from `dist/`;
 * STREAMGRAD_CLI names a compiled `cli.js` to start instead (the benchmarks use `dist/`,
 * whose processes do not carry a TypeScript loader).
 */
function cliCommand(): string[] {
  const flags = process.execArgv.filter((arg) => !arg.startsWith('--inspect'));
  const override = process.env.STREAMGRAD_CLI;
  if (override) return [...flags.filter((arg, i, all) => arg !== '--import' && all[i - 1] !== '--import'), override];
  return [...flags, fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../cli.ts' : '../cli.js', import.meta.url))];
}

/** Creates the input topic (with `inputPartitions`) and, unless `inputOnly`, the namespace's topics, where missing. */
export async function ensureExperimentTopics(kafka: Kafka, config: ExperimentConfig, inputOnly = false): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (!(await admin.listTopics()).includes(config.inputTopic)) await createTopics(admin, [{ topic: config.inputTopic, numPartitions: config.inputPartitions }]);
    if (!inputOnly) await ensureNamespaceTopics(admin, config.namespace, config.model.shards);
  } finally {
    await admin.disconnect();
  }
}

/** Grows the input topic to `partitions`; running workers pick the new partitions up within seconds. */
export async function growInputTopic(kafka: Kafka, topic: string, partitions: number): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    // Only a topic the broker does not know is a bad setting; any other error (a broker away) is itself.
    const missing = (error: { type?: string }) => (error.type === 'UNKNOWN_TOPIC_OR_PARTITION' ? { topics: [] } : Promise.reject(error));
    const [metadata] = (await admin.fetchTopicMetadata({ topics: [topic] }).catch(missing)).topics;
    if (!metadata) throw new ConfigError('inputTopic', `topic '${topic}' does not exist on the broker`);
    const current = metadata.partitions.length;
    if (partitions < current) throw new ConfigError('--partitions', `${topic} has ${current} partitions; Kafka can only add partitions, so ask for ${current} or more`);
    if (partitions > current) await admin.createPartitions({ topicPartitions: [{ topic, count: partitions }] });
    return current;
  } finally {
    await admin.disconnect();
  }
}

/** One child process of a run, with its output relayed line by line. */
interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  readonly exited: Promise<number | null>;
}

/**
 * `streamgrad run`: creates the topics, starts one parameter server and
 * `workers` workers as child processes (and the simulator in this process when
 * asked), shows one live progress line, and on Ctrl-C, SIGTERM or the end of
 * `durationSeconds` stops everything in order: the simulator, the workers
 * (which commit their checkpoints), then the server (which commits its last
 * snapshots). `streamgrad scale --workers K` adds workers to it.
 */
export async function runExperiment(options: RunOptions): Promise<RunSummary> {
  const { config, display } = options;
  await assertReachable(config.brokers);
  const kafka = createKafka({ clientId: `streamgrad-run-${process.pid}`, brokers: config.brokers });
  await ensureExperimentTopics(kafka, config);

  const children: Child[] = [];
  let stopping = false;
  let failure: Error | undefined;
  let requestStop: () => void = () => {};
  const stopRequested = new Promise<void>((resolve) => (requestStop = resolve));
  const metricsPort = (offset: number) => (config.metricsPort === undefined ? [] : ['--metrics-port', String(config.metricsPort === 0 ? 0 : config.metricsPort + offset)]);

  const spawnChild = (name: string, args: string[]): Child => {
    const child = spawn(process.execPath, [...cliCommand(), ...args, '--config', options.configFile], {
      env: { ...process.env, KAFKA_BROKERS: config.brokers.join(',') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const stream of [child.stdout, child.stderr]) {
      let partial = '';
      stream.on('data', (chunk: Buffer) => {
        const lines = (partial + chunk.toString()).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) if (line.trim()) display.log(`${name}: ${line}`);
      });
    }
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code, signal) => {
        if (!stopping) {
          failure ??= new Error(`${name} exited unexpectedly (${signal ?? `code ${code}`}); stopping the run`);
          display.log(failure.message);
          requestStop();
        }
        resolve(code);
      }),
    );
    const entry = { name, process: child, exited };
    children.push(entry);
    return entry;
  };

  // If this process dies without stopping them, the children still get SIGTERM and drain by themselves.
  const orphanGuard = () => children.forEach((child) => child.process.exitCode === null && child.process.kill('SIGTERM'));
  process.on('exit', orphanGuard);

  let workerCount = 0;
  const addWorkers = (count: number): string[] =>
    Array.from({ length: count }, () => {
      workerCount += 1;
      const id = `worker-${workerCount}`;
      spawnChild(id, ['worker', '--worker-id', `${config.namespace}-${id}`, ...metricsPort(workerCount)]);
      return id;
    });

  const server = spawnChild('ps', ['ps', ...metricsPort(0)]);
  addWorkers(options.workers);
  display.log(`namespace ${config.namespace}: 1 parameter server and ${options.workers} worker(s) on ${config.inputTopic} (Ctrl-C stops them cleanly)`);

  let simulator: Simulator | undefined;
  if (options.simulate) {
    const settings: SimulatorOptions = { ...config.simulator, ...Object.fromEntries(Object.entries(options.simulate).filter(([, v]) => v !== undefined)) };
    simulator = startSimulator(kafka, config.inputTopic, settings, config.input);
    simulator.done.catch((error: Error) => {
      failure ??= new Error(`the simulator failed: ${error.message}`);
      requestStop();
    });
    display.log(`simulating ${settings.devices} devices at ${settings.ratePerSecond} samples/s into ${config.inputTopic}${settings.count ? `, ${settings.count} samples` : ''}`);
  }

  const control: Server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const add = Number(url.searchParams.get('add'));
    if (request.method !== 'POST' || url.pathname !== '/workers' || !Number.isInteger(add) || add < 1 || add > 64) {
      response.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'POST /workers?add=<1..64>' }));
      return;
    }
    if (stopping) {
      response.writeHead(409, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'the run is stopping' }));
      return;
    }
    const added = addWorkers(add);
    display.log(`scale: started ${added.join(', ')}`);
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ added, workers: workerCount }));
  });
  await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve));
  mkdirSync(join(tmpdir(), 'streamgrad'), { recursive: true });
  writeFileSync(handleFile(config.namespace), JSON.stringify({ pid: process.pid, control: `http://127.0.0.1:${(control.address() as AddressInfo).port}` } satisfies RunHandle));

  const status = new StatusReader(kafka, config);
  const startedAt = Date.now();
  let last: StatusReport | undefined;
  let progress: ReturnType<typeof setInterval> | undefined;
  // Any failure from here on stops the run the same way Ctrl-C does: the children are never left behind.
  status.start().then(
    () => {
      progress = setInterval(() => {
        status.read().then(
          (report) => {
            last = report;
            options.onReport?.(report);
            const elapsed = Math.round((Date.now() - startedAt) / 1000);
            display.progress(`${elapsed}s | ${progressLine(report)}${simulator ? ` | sent ${simulator.sent().toLocaleString('en-US')}` : ''}`);
          },
          (error: Error) => display.log(`status: ${error.message}`),
        );
      }, options.progressIntervalMs ?? 1_000);
    },
    (error: Error) => {
      failure ??= error;
      requestStop();
    },
  );

  const onSignal = (signal: string) => {
    display.log(`${signal}: stopping the simulator, the workers (committing their checkpoints) and the parameter server …`);
    requestStop();
  };
  const onInt = () => onSignal('SIGINT');
  const onTerm = () => onSignal('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  const timer = options.durationSeconds === undefined ? undefined : setTimeout(requestStop, options.durationSeconds * 1_000);
  void options.until?.then(requestStop, requestStop);

  await stopRequested;
  stopping = true;
  clearTimeout(timer);
  control.close();
  rmSync(handleFile(config.namespace), { force: true });
  if (simulator) {
    simulator.stop();
    await simulator.done.catch(() => {});
  }
  const peaks: Record<string, number> = {};
  const cpuSeconds: Record<string, number> = {};
  const stopChildren = async (which: Child[]) => {
    for (const child of which) {
      const peak = peakRssMb(child.process.pid);
      if (peak !== undefined) peaks[child.name] = peak;
      const cpu = cpuSecondsOf(child.process.pid);
      if (cpu !== undefined) cpuSeconds[child.name] = cpu;
      child.process.kill('SIGTERM');
    }
    const slow = setTimeout(() => {
      const waiting = which.filter((child) => child.process.exitCode === null && child.process.signalCode === null).map((child) => child.name);
      if (waiting.length > 0) display.log(`still stopping after 15 s: ${waiting.join(', ')} (SIGKILL at 60 s; a killed worker or server loses nothing, its successor resumes from the last commit)`);
    }, 15_000);
    const killer = setTimeout(() => which.forEach((child) => child.process.kill('SIGKILL')), 60_000);
    await Promise.all(which.map((child) => child.exited));
    clearTimeout(slow);
    clearTimeout(killer);
  };
  await stopChildren(children.filter((child) => child !== server));
  // The workers' last updates are committed: let the server take them into a snapshot before it stops.
  if (!failure) await status.serverCaughtUp(15_000).catch((error: Error) => display.log(error.message));
  await stopChildren([server]);
  clearInterval(progress);
  process.off('SIGINT', onInt);
  process.off('SIGTERM', onTerm);
  if (!failure) {
    await status.catchUp().catch(() => {});
    last = await status.read().catch(() => last);
  }
  await status.stop().catch(() => {});
  process.off('exit', orphanGuard);
  display.done();
  if (failure) throw failure;
  if (!last) throw new Error(`no status of ${config.namespace} could be read`);
  return { sent: simulator?.sent() ?? 0, seconds: (Date.now() - startedAt) / 1000, status: last, workers: workerCount, peakRssMb: peaks, cpuSeconds };
}
