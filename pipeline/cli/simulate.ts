import type { Command } from 'commander';
import { loadExperiment } from '../common/config.js';
import { ConsoleDisplay, formatCount as count } from '../common/console.js';
import { assertReachable, createKafka } from '../common/kafkaClient.js';
import { startSimulator } from '../commands/simulator.js';
import { ensureExperimentTopics } from '../common/topics.js';
import { integer, positive, configOption, example } from './options.js';

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
  await assertReachable(config);
  const kafka = createKafka(config, `streamgrad-simulate-${process.pid}`);
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

/** `streamgrad simulate`. */
export function addSimulateCommand(program: Command): void {
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
}
