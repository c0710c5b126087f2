#!/usr/bin/env node
import { accessSync, constants, mkdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ConfigError, StreamgradError } from '../schemas/errors.js';
import { exitCodeOf, NamespaceError } from './common/errors.js';
import { loadExperiment, parseNamespace, type ExperimentConfig } from './common/config.js';
import { ConsoleDisplay, formatCount as count } from './common/console.js';
import { runDemo } from './commands/demo.js';
import { exportModel, type Quantization } from './commands/export.js';
import { assertReachable, createKafka } from './common/kafkaClient.js';
import { brokersFromEnv, startLocalBroker, stopLocalBroker } from './commands/localBroker.js';
import { serveMetrics } from './common/metrics.js';
import { latestSnapshots } from './common/modelStore.js';
import { packageInfo } from './common/packageInfo.js';
import { startParameterServer } from './server/parameterServer.js';
import { percentile } from './common/percentile.js';
import { parseOffsets, parseTime, runReplay, type ReplayRange } from './commands/replay.js';
import { startSimulator } from './commands/simulator.js';
import { formatStatus, StatusReader } from './commands/status.js';
import { findRun } from './commands/runProcesses.js';
import { runExperiment } from './commands/supervisor.js';
import { startWorker } from './worker/worker.js';
import { selectBackend } from './common/backend.js';
import { auditNamespace, formatAudit } from './commands/audit.js';
import { ensureExperimentTopics, growInputTopic, topicsOf } from './common/topics.js';
import type { Registry } from 'prom-client';

/** A long-running process: stopped gracefully on SIGTERM or SIGINT, done once it has drained. */
interface Service {
  stop(): void;
  readonly done: Promise<void>;
}

/**
 * Runs the service that `start` starts until SIGTERM or SIGINT, then lets it finish what it holds (`draining`), and
 * waits for it. A signal that arrives while the service is still starting stops it as soon as it runs.
 */
async function runUntilSignal<S extends Service>(name: (service: S) => string, start: () => Promise<S>, draining: string): Promise<void> {
  let service: S | undefined;
  let early: string | undefined;
  const stop = (signal: string) => {
    if (!service) {
      early = signal;
      return;
    }
    console.error(`[${name(service)}] ${signal}: ${draining}`);
    service.stop();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // A promise some library left without a handler must not kill a process that holds uncommitted work (the wasm
  // runtime's own handler turned one into exit code 7 mid-drain): say so loudly, and go on draining.
  process.on('unhandledRejection', (reason) => {
    console.error(`[${service ? name(service) : 'streamgrad'}] ERROR: unhandled rejection (not fatal): ${reason instanceof Error ? reason.stack ?? reason.message : String(reason)}`);
  });
  service = await start();
  console.error(`[${name(service)}] running; SIGTERM or Ctrl-C stops it cleanly`);
  if (early) stop(early);
  await service.done;
  console.error(`[${name(service)}] stopped`);
  // Everything is committed by now. kafkajs can keep a socket of a producer closed mid-rebalance open for a minute:
  // say what is still open, and exit rather than wait for it.
  setTimeout(() => {
    const open = process.getActiveResourcesInfo().filter((kind) => kind !== 'Timeout');
    console.error(`[${name(service!)}] exiting with resources still open after 5 s: ${open.join(', ') || 'timers only'}`);
    process.exit(0);
  }, 5_000).unref();
}

/** Serves `registry` at /metrics while `done` is pending, when a port is given. */
async function withMetrics(name: string, registry: Registry, port: number | undefined, done: Promise<void>): Promise<void> {
  if (port === undefined) return;
  const endpoint = await serveMetrics(registry, port);
  console.error(`[${name}] Prometheus metrics at ${endpoint.url}`);
  void done.finally(() => endpoint.close());
}

/** A positive (or non-negative) integer option; the error names the option. */
const integer = (name: string, min = 1) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}, got '${value}'`);
  return n;
};
const positive = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a number > 0, got '${value}'`);
  return n;
};

const configOption = () => new Option('-c, --config <file>', 'experiment configuration, JSON or YAML (see examples/)').makeOptionMandatory();
const metricsOption = () => new Option('--metrics-port <port>', 'serve Prometheus metrics at http://127.0.0.1:<port>/metrics (0: any free port; default: the config\'s metricsPort, else off)').argParser(integer('--metrics-port', 0));
const example = (lines: string) => `\nExample:\n${lines}`;

async function workerCommand(options: { config: string; workerId?: string; metricsPort?: number }): Promise<void> {
  const config = loadExperiment(options.config);
  await assertReachable(config.brokers);
  await runUntilSignal((worker) => `worker ${worker.workerId}`, async () => {
    const worker = await startWorker(options.workerId ? { ...config, workerId: options.workerId } : config);
    await withMetrics(`worker ${worker.workerId}`, worker.metrics.registry, options.metricsPort ?? config.metricsPort, worker.done);
    let last = Date.now();
    worker.checkpoints.subscribe(() => {
      if (Date.now() - last < 5_000) return;
      last = Date.now();
      const { samples, deadLettered } = worker.trained();
      const memory = process.memoryUsage();
      const mb = (bytes: number) => `${Math.round(bytes / 2 ** 20)} MB`;
      console.error(`[worker ${worker.workerId}] ${count(samples)} samples trained, ${count(deadLettered)} dead-lettered so far; memory: rss ${mb(memory.rss)}, JS heap ${mb(memory.heapUsed)} of ${mb(memory.heapTotal)}, buffers ${mb(memory.arrayBuffers)}`);
    });
    return worker;
  }, 'finishing the open checkpoints');
}

async function serverCommand(options: { config: string; metricsPort?: number }): Promise<void> {
  const config = loadExperiment(options.config);
  await assertReachable(config.brokers);
  await runUntilSignal((server) => `ps ${server.serverId}`, async () => {
    const server = await startParameterServer(config);
    await withMetrics(`ps ${server.serverId}`, server.metrics.registry, options.metricsPort ?? config.metricsPort, server.done);
    let last = 0;
    let freshness: number[] = [];
    server.freshness.subscribe((ms) => freshness.push(ms));
    server.snapshots.subscribe((report) => {
      if (Date.now() - last < 5_000) return;
      last = Date.now();
      const p50 = percentile(freshness, 50);
      const p99 = percentile(freshness, 99);
      freshness = [];
      const ms = (value: number) => (Number.isNaN(value) ? '-' : `${value} ms`);
      console.error(`[ps ${server.serverId}] shard ${report.shard} version ${report.version}, ${count(report.samplesApplied)} samples applied, freshness p50 ${ms(p50)} p99 ${ms(p99)}`);
    });
    return server;
  }, 'committing the last snapshots');
}

async function upCommand(): Promise<void> {
  const fromEnv = brokersFromEnv();
  if (fromEnv) {
    console.error(`KAFKA_BROKERS is set (${fromEnv.join(',')}): using that broker, nothing to start`);
    console.log(fromEnv.join(','));
    return;
  }
  const { brokers, alreadyRunning } = await startLocalBroker();
  console.error(alreadyRunning ? 'the local broker is already running' : 'the local broker is up (stop it with `streamgrad down`)');
  console.log(brokers.join(','));
}

async function downCommand(options: { clean?: boolean }): Promise<void> {
  if (brokersFromEnv()) {
    console.error('KAFKA_BROKERS is set: that broker is not ours to stop');
    return;
  }
  await stopLocalBroker(options.clean);
  console.error(options.clean ? 'the local broker is stopped and its data deleted' : 'the local broker is stopped (its topics are kept)');
}

interface SimulateOptions {
  config: string;
  devices?: number;
  rate?: number;
  duration?: number;
  count?: number;
  seed?: number;
  driftAfter?: number;
}

async function simulateCommand(options: SimulateOptions): Promise<void> {
  const config = loadExperiment(options.config);
  await assertReachable(config.brokers);
  const kafka = createKafka({ clientId: `streamgrad-simulate-${process.pid}`, brokers: config.brokers });
  await ensureExperimentTopics(kafka, config, true);
  const settings = {
    ...config.simulator,
    ...(options.devices ? { devices: options.devices } : {}),
    ...(options.rate ? { ratePerSecond: options.rate } : {}),
    ...(options.seed !== undefined ? { seed: options.seed } : {}),
    ...(options.driftAfter !== undefined ? { driftAfterMs: options.driftAfter * 1_000 } : {}),
    ...(options.count ? { count: options.count } : {}),
  };
  const display = new ConsoleDisplay('[simulate]');
  const simulator = startSimulator(kafka, config.inputTopic, settings, config.input);
  display.log(`${settings.devices} devices at ${settings.ratePerSecond} samples/s into ${config.inputTopic}${settings.count ? `, ${count(settings.count)} samples` : ''}${options.duration ? `, for ${options.duration} s` : ''} (seed ${settings.seed}${settings.driftAfterMs !== undefined ? `, drift after ${settings.driftAfterMs / 1000} s` : ''})`);
  const startedAt = Date.now();
  const progress = setInterval(() => display.progress(`${Math.round((Date.now() - startedAt) / 1000)}s | sent ${count(simulator.sent())}`), 1_000);
  const timer = options.duration ? setTimeout(() => simulator.stop(), options.duration * 1_000) : undefined;
  const stop = () => simulator.stop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await simulator.done.finally(() => {
    clearInterval(progress);
    clearTimeout(timer);
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  });
  display.done();
  display.log(`sent ${count(simulator.sent())} samples to ${config.inputTopic}`);
}

interface RunCommandOptions {
  config: string;
  workers: number;
  simulate?: boolean;
  rate?: number;
  devices?: number;
  count?: number;
  duration?: number;
}

async function runCommand(options: RunCommandOptions): Promise<void> {
  const config = loadExperiment(options.config);
  const display = new ConsoleDisplay('[run]');
  const simulate = options.simulate || options.count || options.rate || options.devices ? { count: options.count, ratePerSecond: options.rate, devices: options.devices } : undefined;
  const summary = await runExperiment({ configFile: options.config, config, workers: options.workers, simulate, durationSeconds: options.duration, display });
  display.log(`stopped after ${Math.round(summary.seconds)} s${simulate ? `; ${count(summary.sent)} samples simulated` : ''}`);
  console.log(formatStatus(summary.status));
}

interface ReplayCommandOptions {
  config: string;
  namespace?: string;
  from?: string;
  to?: string;
  fromOffsets?: string;
  toOffsets?: string;
  sync?: boolean;
  json?: boolean;
}

async function replayCommand(options: ReplayCommandOptions): Promise<void> {
  if (options.from && options.fromOffsets) throw new ConfigError('--from', 'give --from (a time) or --from-offsets, not both');
  if (options.to && options.toOffsets) throw new ConfigError('--to', 'give --to (a time) or --to-offsets, not both');
  const range: ReplayRange = {
    ...(options.from ? { from: { timestamp: parseTime(options.from, '--from') } } : options.fromOffsets ? { from: { offsets: parseOffsets(options.fromOffsets, '--from-offsets') } } : {}),
    ...(options.to ? { to: { timestamp: parseTime(options.to, '--to') } } : options.toOffsets ? { to: { offsets: parseOffsets(options.toOffsets, '--to-offsets') } } : {}),
  };
  if (range.from && range.to && 'timestamp' in range.from && 'timestamp' in range.to && range.from.timestamp >= range.to.timestamp) {
    throw new ConfigError('--from', `${new Date(range.from.timestamp).toISOString()} is not before --to ${new Date(range.to.timestamp).toISOString()}: the range is empty`);
  }
  if (range.from && range.to && 'offsets' in range.from && 'offsets' in range.to) {
    const to = range.to.offsets;
    for (const [partition, offset] of Object.entries(range.from.offsets)) {
      const end = to[Number(partition)];
      if (end !== undefined && offset > end) throw new ConfigError('--from-offsets', `partition ${partition}: ${offset} is after --to-offsets ${end}`);
    }
  }
  const config = loadExperiment(options.config);
  const namespace = options.namespace === undefined ? undefined : parseNamespace(options.namespace, '--namespace');
  const summary = await runReplay({ config, namespace, range, sync: options.sync ?? false, display: new ConsoleDisplay('[replay]') });
  if (options.json) {
    console.log(JSON.stringify(summary));
    return;
  }
  console.log(
    [
      `namespace   ${summary.namespace}`,
      `samples     ${count(summary.samples)} (${count(summary.deadLettered)} dead-lettered)`,
      `final loss  ${summary.finalLoss === undefined ? '-' : summary.finalLoss.toFixed(6)}`,
      `version     ${summary.versions.join('/')}`,
      `model hash  ${summary.hash}`,
      `took        ${summary.seconds.toFixed(1)} s`,
    ].join('\n'),
  );
}

async function scaleCommand(options: { config: string; partitions?: number; workers?: number }): Promise<void> {
  if (options.partitions === undefined && options.workers === undefined) throw new ConfigError('--partitions', 'give --partitions N, --workers K, or both');
  const config = loadExperiment(options.config);
  await assertReachable(config.brokers);
  if (options.partitions !== undefined) {
    const kafka = createKafka({ clientId: `streamgrad-scale-${process.pid}`, brokers: config.brokers });
    const before = await growInputTopic(kafka, config.inputTopic, options.partitions);
    console.error(before === options.partitions ? `${config.inputTopic} already has ${before} partitions` : `${config.inputTopic}: ${before} → ${options.partitions} partitions; the workers take the new ones within seconds`);
  }
  if (options.workers !== undefined) {
    const run = findRun(config.namespace);
    if (!run) throw new NamespaceError(config.namespace, 'no `streamgrad run` of it on this machine to add workers to; start one, or start workers with `streamgrad worker --config`');
    const response = await fetch(`${run.control}/workers?add=${options.workers}`, { method: 'POST' });
    const body = (await response.json()) as { added?: string[]; workers?: number; error?: string };
    if (!response.ok) throw new Error(`streamgrad run (pid ${run.pid}) refused: ${body.error}`);
    console.error(`added ${body.added?.join(', ')} to the run (pid ${run.pid}); it now has ${body.workers} workers`);
  }
}

/** The experiment of `file`, in another namespace when `namespace` is given (a replay's, say). */
function experimentIn(file: string, namespace: string | undefined): ExperimentConfig {
  const config = loadExperiment(file);
  return namespace === undefined ? config : { ...config, namespace: parseNamespace(namespace, '--namespace') };
}

async function auditCommand(options: { config: string; namespace?: string; json?: boolean }): Promise<void> {
  const config = experimentIn(options.config, options.namespace);
  await assertReachable(config.brokers);
  const kafka = createKafka({ clientId: `streamgrad-audit-${process.pid}`, brokers: config.brokers });
  const admin = kafka.admin();
  await admin.connect();
  const existing = await admin.listTopics().finally(() => admin.disconnect());
  if (!existing.includes(topicsOf(config.namespace).updates)) throw new NamespaceError(config.namespace, `${topicsOf(config.namespace).updates} does not exist`);
  if (!existing.includes(config.inputTopic)) throw new ConfigError('inputTopic', `topic '${config.inputTopic}' does not exist on the broker`);
  const report = await auditNamespace({ kafka, namespace: config.namespace, inputTopic: config.inputTopic, log: (line) => console.error(`[audit] ${line}`) });
  console.log(options.json ? JSON.stringify(report) : formatAudit(report));
  process.exitCode = report.ok ? 0 : 1;
}

async function statusCommand(options: { config: string; namespace?: string; watch?: boolean; interval: number; json?: boolean }): Promise<void> {
  const config = experimentIn(options.config, options.namespace);
  await assertReachable(config.brokers);
  const reader = new StatusReader(createKafka({ clientId: `streamgrad-status-${process.pid}`, brokers: config.brokers }), config);
  await reader.start();
  try {
    await reader.catchUp();
    const show = (report: Awaited<ReturnType<StatusReader['read']>>) => console.log(options.json ? JSON.stringify(report) : formatStatus(report));
    if (!options.watch) {
      // Two readings a second apart, for rates.
      await reader.read();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      show(await reader.read());
      return;
    }
    let stopped = false;
    const stop = () => (stopped = true);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    while (!stopped) {
      const report = await reader.read();
      if (process.stdout.isTTY && !options.json) process.stdout.write('\x1b[2J\x1b[H');
      show(report);
      for (let waited = 0; waited < options.interval * 1_000 && !stopped; waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await reader.stop();
  }
}

/** Makes `dir` (and its parents) and checks it takes files, before any work is done for it. */
function assertWritableDirectory(dir: string, option: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
    const probe = join(dir, `.streamgrad-write-test-${process.pid}`);
    writeFileSync(probe, '');
    rmSync(probe);
  } catch (error) {
    throw new ConfigError(option, `cannot write to ${dir}: ${(error as Error).message}`);
  }
}

async function exportCommand(options: { config: string; namespace?: string; out: string; quantize?: Quantization }): Promise<void> {
  const config = experimentIn(options.config, options.namespace);
  assertWritableDirectory(options.out, '--out');
  await assertReachable(config.brokers);
  const kafka = createKafka({ clientId: `streamgrad-export-${process.pid}`, brokers: config.brokers });
  const admin = kafka.admin();
  await admin.connect();
  const exists = (await admin.listTopics()).includes(`${config.namespace}.model`);
  await admin.disconnect();
  if (!exists) throw new NamespaceError(config.namespace, `no topic ${config.namespace}.model on the broker`);
  const snapshots = await latestSnapshots(kafka, config.namespace);
  if (snapshots.size < config.model.shards) throw new NamespaceError(config.namespace, `${config.namespace}.model has snapshots of ${snapshots.size} of ${config.model.shards} shards; train longer first`);
  await selectBackend({ backend: config.backend });
  const result = await exportModel(config.model, snapshots, options.out, options.quantize);
  console.error(`exported snapshot versions ${result.versions.join('/')} of ${config.namespace} (${count(result.weightBytes)} bytes of ${options.quantize ?? 'float32'} weights)`);
  console.log(result.modelJson);
}

/** The `streamgrad` command line. */
export function buildCli(): Command {
  const { version } = packageInfo();
  const program = new Command('streamgrad')
    .description('Continuous training from Kafka: exactly-once gradient steps, versioned model snapshots.')
    .version(version)
    // Set before the sub-commands, which inherit it: errors come back to the caller, who picks the exit code.
    .exitOverride()
    .showHelpAfterError()
    .addHelpText('after', example('  streamgrad up\n  streamgrad run --config examples/iot.yaml --workers 2 --simulate\n  streamgrad status --config examples/iot.yaml'));
  program
    .command('demo')
    .description('the main job in one command: a local broker, simulated IoT telemetry, a parameter server and two workers training for about 60 s, with live progress, a summary and an exported model')
    .option('--duration <seconds>', 'how long to train', positive('--duration'), 60)
    .option('--rate <samples/s>', 'simulated telemetry rate', positive('--rate'), 5_000)
    .option('--devices <n>', 'simulated devices', integer('--devices'), 200)
    .option('--workers <n>', 'worker processes', integer('--workers'), 2)
    .option('--out <dir>', 'where to export the model', 'streamgrad-demo-model')
    .addHelpText('after', example('  streamgrad demo --duration 30 --rate 10000') + '\n\nUses KAFKA_BROKERS when set, else starts infra/kafka (Java 17+ and Maven). Ctrl-C stops it cleanly.')
    .action(runDemo);
  program
    .command('up')
    .description('start the local Kafka broker from infra/kafka (KRaft on 127.0.0.1:19092); prints the bootstrap address. Nothing to do when KAFKA_BROKERS is set')
    .addHelpText('after', example('  export KAFKA_BROKERS=$(streamgrad up)'))
    .action(upCommand);
  program
    .command('down')
    .description('stop the local Kafka broker (its topics are kept unless --clean)')
    .option('--clean', 'delete its data too')
    .addHelpText('after', example('  streamgrad down --clean'))
    .action(downCommand);
  program
    .command('simulate')
    .description('produce simulated IoT telemetry (TrainingSamples keyed by device id) to the experiment\'s input topic: daily cycles, per-device offsets, noise, sensor dropouts, a known label function, optional concept drift')
    .addOption(configOption())
    .option('--devices <n>', 'devices (default: the config\'s simulator.devices)', integer('--devices'))
    .option('--rate <samples/s>', 'samples per second (default: simulator.ratePerSecond)', positive('--rate'))
    .option('--duration <seconds>', 'stop after this long', positive('--duration'))
    .option('--count <n>', 'stop after this many samples', integer('--count'))
    .option('--seed <n>', 'random seed (default: simulator.seed)', integer('--seed', 0))
    .option('--drift-after <seconds>', 'change the label function this long after the start (concept drift)', positive('--drift-after'))
    .addHelpText('after', example('  streamgrad simulate --config examples/iot.yaml --devices 500 --rate 2000 --duration 120 --drift-after 60'))
    .action(simulateCommand);
  program
    .command('run')
    .description('create the topics, start one parameter server and K workers as child processes (and the simulator with --simulate), and show live progress: samples/s, loss, lag, model version, freshness. Ctrl-C stops everything cleanly')
    .addOption(configOption())
    .option('--workers <k>', 'worker processes', integer('--workers'), 2)
    .option('--simulate', 'also run the IoT simulator into the input topic')
    .option('--rate <samples/s>', 'simulator rate (implies --simulate)', positive('--rate'))
    .option('--devices <n>', 'simulated devices (implies --simulate)', integer('--devices'))
    .option('--count <n>', 'simulate this many samples, then keep training (implies --simulate)', integer('--count'))
    .option('--duration <seconds>', 'stop after this long', positive('--duration'))
    .addHelpText('after', example('  streamgrad run --config examples/iot.yaml --workers 2 --simulate --rate 5000'))
    .action(runCommand);
  program
    .command('replay')
    .description('train a new experiment namespace on a range of the input topic\'s history (by time or offsets), with the config\'s own model and optimizer; ends by itself and prints samples, final loss, model version and model hash. The live namespace is never touched')
    .addOption(configOption())
    .option('--namespace <ns>', 'the new namespace (default: <config namespace>.replay-<time>); it must not exist')
    .option('--from <time>', 'first record at or after this time: ISO 8601 or ms since the epoch (default: the beginning)')
    .option('--to <time>', 'stop before the first record at or after this time (default: the end as of the start)')
    .option('--from-offsets <p:o,…>', 'start offsets per partition, e.g. 0:1000,1:1000 (others: the beginning)')
    .option('--to-offsets <p:o,…>', 'end offsets (exclusive) per partition (others: the end)')
    .option('--sync', 'one update at a time, each waiting for its snapshot: two replays of a range give identical model hashes')
    .option('--json', 'print the summary as JSON')
    .addHelpText('after', example('  streamgrad replay --config experiments/lr-0.01.yaml --from 2026-11-28T08:00:00Z --to 2026-11-28T09:00:00Z --sync'))
    .action(replayCommand);
  program
    .command('scale')
    .description('grow the input topic to N partitions while training runs, and add K worker processes to the running `streamgrad run`; the workers rebalance with nothing lost')
    .addOption(configOption())
    .option('--partitions <n>', 'the input topic\'s new partition count (Kafka only adds partitions)', integer('--partitions'))
    .option('--workers <k>', 'worker processes to add to the run of this namespace on this machine', integer('--workers'))
    .addHelpText('after', example('  streamgrad scale --config examples/iot.yaml --partitions 8 --workers 2'))
    .action(scaleCommand);
  program
    .command('status')
    .description('per partition: lag, rate and owning worker; per shard: version, samples applied, dropped stale updates, freshness; loss and dead letters. Reads Kafka only, so it works from any machine')
    .addOption(configOption())
    .option('--namespace <ns>', 'another namespace than the config\'s (a replay\'s, say)')
    .option('--watch', 'refresh until Ctrl-C')
    .option('--interval <seconds>', 'refresh interval with --watch', positive('--interval'), 2)
    .option('--json', 'print JSON')
    .addHelpText('after', example('  streamgrad status --config examples/iot.yaml --watch'))
    .action(statusCommand);
  program
    .command('audit')
    .description('prove from the committed topics that every input record up to the workers\' committed offsets was trained or dead-lettered exactly once (gaps and overlaps listed as offset runs, per partition and shard), and that every shard\'s versions strictly increase and its counters account for every update. Exit 0 only when all holds, 1 when not')
    .addOption(configOption())
    .option('--namespace <ns>', 'another namespace than the config\'s (a replay\'s, say)')
    .option('--json', 'print JSON')
    .addHelpText('after', example('  streamgrad audit --config examples/iot.yaml'))
    .action(auditCommand);
  program
    .command('export')
    .description('write the current model from <namespace>.model as a TensorFlow.js LayersModel directory (model.json + weights.bin), optionally with quantized weights; prints the model.json path')
    .addOption(configOption())
    .requiredOption('-o, --out <dir>', 'output directory')
    .option('--namespace <ns>', 'another namespace than the config\'s (a replay\'s, say)')
    .addOption(new Option('--quantize <dtype>', 'quantized weights for edge devices (uint8: 1/4 of the size, error ≤ (max−min)/510 per tensor; float16: 1/2, relative error ≤ 2^-11)').choices(['uint8', 'float16']))
    .addHelpText('after', example('  streamgrad export --config examples/iot.yaml --out model/ --quantize uint8\n  # then, in any TF.js program: await tf.loadLayersModel(\'file://model/model.json\')'))
    .action(exportCommand);
  program
    .command('worker')
    .description('join <namespace>.workers on the input topic and train: gradient steps per micro-batch, updates to <namespace>.updates')
    .addOption(configOption())
    .option('--worker-id <id>', 'this worker\'s id (default: host-pid)')
    .addOption(metricsOption())
    .addHelpText('after', example('  KAFKA_BROKERS=127.0.0.1:19092 streamgrad worker --config examples/iot.yaml --metrics-port 9464') + '\n\nSIGTERM or Ctrl-C finishes the open checkpoint, commits, leaves the group and exits 0.')
    .action(workerCommand);
  program
    .command('ps')
    .description('join <namespace>.ps on <namespace>.updates and own its shards: apply updates, publish versioned snapshots to <namespace>.model')
    .addOption(configOption())
    .addOption(metricsOption())
    .addHelpText('after', example('  KAFKA_BROKERS=127.0.0.1:19092 streamgrad ps --config examples/iot.yaml --metrics-port 9463') + '\n\nSIGTERM or Ctrl-C commits the last snapshots, leaves the group and exits 0.')
    .action(serverCommand);
  return program;
}


const invokedDirectly = process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
if (invokedDirectly) {
  try {
    await buildCli().parseAsync(process.argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // commander has printed the message (or the help or version).
      process.exitCode = error.exitCode === 0 ? 0 : 2;
    } else {
      console.error(error instanceof StreamgradError ? `streamgrad: ${error.message}` : error);
      // A failed command may still hold Kafka connections or child processes: end it here.
      process.exit(exitCodeOf(error));
    }
  }
}
