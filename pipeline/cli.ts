#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { StreamgradError } from '../schemas/errors.js';
import { loadWorkerConfig } from './config.js';
import { runDemo } from './demo.js';
import { packageInfo } from './packageInfo.js';
import { percentile } from './percentile.js';
import { startParameterServer } from './parameterServer.js';
import { startWorker } from './worker.js';

/** A long-running process: stopped gracefully on SIGTERM or SIGINT, done once it has drained. */
interface Service {
  stop(): void;
  readonly done: Promise<void>;
}

/** Runs `service` until SIGTERM or SIGINT, then lets it finish what it holds (`draining`), and waits for it. */
async function runUntilSignal(name: string, service: Service, draining: string): Promise<void> {
  const stop = (signal: string) => {
    console.error(`[${name}] ${signal}: ${draining}`);
    service.stop();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  await service.done;
  console.error(`[${name}] stopped`);
}

/** Runs a worker until SIGTERM or SIGINT, then drains it: the open checkpoints commit and it leaves the group. */
async function runWorkerCommand(options: { config: string }): Promise<void> {
  const worker = await startWorker(loadWorkerConfig(options.config));
  let messages = 0;
  let last = Date.now();
  worker.checkpoints.subscribe((report) => {
    messages += report.messages;
    if (Date.now() - last < 5_000) return;
    last = Date.now();
    console.error(`[worker ${worker.workerId}] ${report.topic}[${report.partition}] committed up to ${report.offset}; ${messages} messages written so far`);
  });
  await runUntilSignal(`worker ${worker.workerId}`, worker, 'finishing the open checkpoints');
}

/** Runs a parameter server until SIGTERM or SIGINT, then commits its last snapshots and leaves the group. */
async function runServerCommand(options: { config: string }): Promise<void> {
  const server = await startParameterServer(loadWorkerConfig(options.config));
  let last = 0;
  let freshness: number[] = [];
  server.freshness.subscribe((ms) => freshness.push(ms));
  server.snapshots.subscribe((report) => {
    if (Date.now() - last < 5_000) return;
    last = Date.now();
    const p50 = percentile(freshness, 50);
    const p99 = percentile(freshness, 99);
    freshness = [];
    console.error(`[ps ${server.serverId}] shard ${report.shard} version ${report.version}, ${report.samplesApplied} samples applied, freshness p50 ${p50} ms p99 ${p99} ms`);
  });
  await runUntilSignal(`ps ${server.serverId}`, server, 'committing the last snapshots');
}

/** The `streamgrad` command line. */
export function buildCli(): Command {
  const { version } = packageInfo();
  const program = new Command('streamgrad')
    .description('Continuous training from Kafka: exactly-once gradient steps, versioned model snapshots.')
    .version(version)
    .showHelpAfterError()
    .addHelpText('after', '\nExample:\n  streamgrad worker --config examples/linear.json');
  program
    .command('worker')
    .description('join <namespace>.workers on the input topic and train: gradient steps per micro-batch, updates to <namespace>.updates')
    .requiredOption('-c, --config <file>', 'experiment configuration, JSON or YAML')
    .addHelpText('after', '\nExample:\n  KAFKA_BROKERS=127.0.0.1:19092 streamgrad worker --config examples/linear.json\n\nSIGTERM or Ctrl-C finishes the open checkpoint, commits, leaves the group and exits 0.')
    .action(runWorkerCommand);
  program
    .command('ps')
    .description('join <namespace>.ps on <namespace>.updates and own its shards: apply updates, publish versioned snapshots to <namespace>.model')
    .requiredOption('-c, --config <file>', 'experiment configuration, JSON or YAML (the same file as the workers)')
    .addHelpText('after', '\nExample:\n  KAFKA_BROKERS=127.0.0.1:19092 streamgrad ps --config examples/linear.json\n\nSIGTERM or Ctrl-C commits the last snapshots, leaves the group and exits 0.')
    .action(runServerCommand);
  program
    .command('demo')
    .description('the main job in one command: a local broker, simulated IoT telemetry, a parameter server and workers training, with live progress')
    .option('--duration <seconds>', 'how long to run', (v) => Number(v), 60)
    .option('--rate <samples/s>', 'simulated telemetry rate', (v) => Number(v), 5_000)
    .option('--devices <n>', 'simulated devices', (v) => Number(v), 200)
    .option('--workers <n>', 'worker count', (v) => Number(v), 2)
    .addHelpText('after', '\nExample:\n  streamgrad demo --duration 30 --rate 10000\n\nUses KAFKA_BROKERS when set, else starts infra/kafka (Java 17+ and Maven). Ctrl-C stops it cleanly.')
    .action((options: { duration: number; rate: number; devices: number; workers: number }) =>
      runDemo({ durationSeconds: options.duration, ratePerSecond: options.rate, devices: options.devices, workers: options.workers }),
    );
  return program;
}

const invokedDirectly = process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
if (invokedDirectly) {
  try {
    await buildCli().parseAsync(process.argv);
  } catch (error) {
    console.error(error instanceof StreamgradError ? `streamgrad: ${error.message}` : error);
    process.exitCode = 1;
  }
}
