import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseWorkerConfig } from './config.js';
import { createKafka } from './kafkaClient.js';
import { packageInfo } from './packageInfo.js';
import { startParameterServer } from './parameterServer.js';
import { percentile } from './percentile.js';
import { simulatedFeatureCount, startSimulator } from './simulator.js';
import { startWorker } from './worker.js';

const run = promisify(execFile);

/** Options of {@link runDemo}. */
export interface DemoOptions {
  readonly durationSeconds: number;
  readonly ratePerSecond: number;
  readonly devices: number;
  readonly workers: number;
}

/** The broker to use: KAFKA_BROKERS, else the infra/ broker, started here (and stopped at the end if it was). */
async function demoBroker(): Promise<{ brokers: string[]; stop(): Promise<void> }> {
  const fromEnv = process.env.KAFKA_BROKERS?.trim();
  if (fromEnv) return { brokers: fromEnv.split(','), stop: async () => {} };
  const infra = join(packageInfo().root, 'infra', 'kafka');
  console.error('[demo] starting the local Kafka broker (infra/kafka/start) …');
  const { stdout, stderr } = await run('bash', [join(infra, 'start')], { maxBuffer: 16 * 1024 * 1024 });
  const reused = stderr.includes('already running');
  return {
    brokers: stdout.trim().split('\n').at(-1)!.split(','),
    stop: async () => {
      if (!reused) await run('bash', [join(infra, 'stop')]);
    },
  };
}

/**
 * The main job in one command: a local broker, simulated IoT telemetry, one
 * parameter server and `workers` workers training a 16-32-1 MLP, and one live
 * progress line: samples/s, recent loss, lag, model version and freshness.
 * Ends after `durationSeconds` or on Ctrl-C, shutting everything down cleanly.
 */
export async function runDemo(options: DemoOptions): Promise<void> {
  const broker = await demoBroker();
  const namespace = `demo-${Date.now()}`;
  const inputTopic = `${namespace}.telemetry`;
  const kafka = createKafka({ clientId: 'streamgrad-demo', brokers: broker.brokers });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic: inputTopic, numPartitions: 4, replicationFactor: -1 }] });
  await admin.disconnect();
  const config = parseWorkerConfig({
    brokers: broker.brokers,
    namespace,
    inputTopic,
    model: { kind: 'mlp', features: simulatedFeatureCount, shards: 2, layers: [{ units: 32, activation: 'tanh' }], optimizer: { kind: 'adam', learningRate: 0.01 } },
    batchSize: 256,
    server: { staleness: { policy: 'scale', bound: 4 } },
  });
  const quiet = () => {};
  console.error(`[demo] namespace ${namespace}: ${options.devices} devices at ${options.ratePerSecond} samples/s into ${inputTopic}; 1 parameter server, ${options.workers} worker(s)`);
  const server = await startParameterServer(config, { log: quiet });
  const workers = await Promise.all(Array.from({ length: options.workers }, (_, i) => startWorker({ ...config, workerId: `demo-worker-${i + 1}` }, { log: i === 0 ? (line) => console.error(`[demo] ${line}`) : quiet })));
  const simulator = startSimulator(kafka, inputTopic, { devices: options.devices, ratePerSecond: options.ratePerSecond, seed: 7 });

  const latest = new Map<number, { samples: number; lossSum: number; version: number }>();
  let freshness: number[] = [];
  server.freshness.subscribe((ms) => freshness.push(ms));
  server.snapshots.subscribe((report) => latest.set(report.shard, { samples: report.samplesApplied, lossSum: report.lossSum, version: report.version }));
  let previousSamples = 0;
  let previousLoss = 0;
  let previousAt = Date.now();
  const progress = setInterval(() => {
    const shard0 = latest.get(0);
    const samples = shard0?.samples ?? 0;
    const now = Date.now();
    const rate = ((samples - previousSamples) * 1000) / (now - previousAt);
    const lossSum = shard0?.lossSum ?? 0;
    const loss = samples > previousSamples ? (lossSum - previousLoss) / (samples - previousSamples) : Number.NaN;
    previousSamples = samples;
    previousLoss = lossSum;
    previousAt = now;
    const p99 = percentile(freshness, 99);
    freshness = [];
    const line = `[demo] ${Math.round(rate).toLocaleString('en-US')} samples/s | loss ${Number.isNaN(loss) ? '-' : loss.toFixed(4)} | applied ${samples.toLocaleString('en-US')} | lag ${(simulator.sent() - samples).toLocaleString('en-US')} | versions ${[...latest.values()].map((s) => s.version).join('/') || '-'} | freshness p99 ${Number.isNaN(p99) ? '-' : `${p99} ms`}`;
    if (process.stderr.isTTY) process.stderr.write(`\r${line.padEnd(110)}`);
    else console.error(line);
  }, 1_000);

  let stopRequested: () => void = () => {};
  const stopped = new Promise<void>((resolve) => (stopRequested = resolve));
  const timer = setTimeout(stopRequested, options.durationSeconds * 1_000);
  process.once('SIGINT', stopRequested);
  process.once('SIGTERM', stopRequested);
  await stopped;
  clearTimeout(timer);
  clearInterval(progress);
  if (process.stderr.isTTY) process.stderr.write('\n');
  console.error('[demo] stopping: simulator, workers (committing their checkpoints), parameter server …');
  simulator.stop();
  await simulator.done;
  for (const worker of workers) worker.stop();
  await Promise.all(workers.map((w) => w.done));
  server.stop();
  await server.done;
  await broker.stop();
  const shard0 = latest.get(0);
  console.error(`[demo] done: ${simulator.sent().toLocaleString('en-US')} samples sent, ${(shard0?.samples ?? 0).toLocaleString('en-US')} applied in the last snapshot; model versions ${[...latest.values()].map((s) => s.version).join('/')}; topics ${namespace}.*`);
}
