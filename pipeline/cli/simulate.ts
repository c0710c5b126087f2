import type { Command } from 'commander';
import { loadExperiment, type ExperimentConfig } from '../common/config.js';
import { ConsoleDisplay, formatCount as count } from '../common/console.js';
import { assertReachable, createKafka, readPem } from '../common/kafkaClient.js';
import type { IClientOptions } from 'mqtt';
import { defaultMqttTopicPattern, startMqttSimulator, startSimulator } from '../commands/simulator.js';
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
  mqtt?: string;
  mqttTopic: string;
  mqttUsername?: string;
}

/** How `simulate --mqtt` connects: the CA of the config's `ingest.mqtt.tls`, a username, and STREAMGRAD_MQTT_PASSWORD. */
function deviceConnectOptions(config: ExperimentConfig, options: SimulateOptions): IClientOptions {
  const caFile = config.ingest?.mqtt.tls?.caFile;
  const password = process.env.STREAMGRAD_MQTT_PASSWORD;
  return {
    clientId: `streamgrad-simulate-${process.pid}`,
    protocolVersion: 5,
    reconnectPeriod: 1_000,
    ...(caFile === undefined ? {} : { ca: readPem(caFile, 'config.ingest.mqtt.tls.caFile', 'the CA certificates') }),
    ...(options.mqttUsername === undefined ? {} : { username: options.mqttUsername }),
    ...(password === undefined ? {} : { password }),
  };
}

async function simulateCommand(options: SimulateOptions): Promise<void> {
  const config = loadExperiment(options.config);
  if (!options.mqtt) {
    await assertReachable(config);
    await ensureExperimentTopics(createKafka(config, `streamgrad-simulate-${process.pid}`), config, true);
  }
  const settings = {
    ...config.simulator,
    ...(options.devices ? { devices: options.devices } : {}),
    ...(options.rate ? { ratePerSecond: options.rate } : {}),
    ...(options.seed !== undefined ? { seed: options.seed } : {}),
    ...(options.driftAfter !== undefined ? { driftAfterMs: options.driftAfter * 1_000 } : {}),
    ...(options.count ? { count: options.count } : {}),
  };
  const display = new ConsoleDisplay('[simulate]');
  const simulator = options.mqtt
    ? startMqttSimulator(options.mqtt, deviceConnectOptions(config, options), options.mqttTopic, settings)
    : startSimulator(createKafka(config, `streamgrad-simulate-${process.pid}`), config.inputTopic, settings, config.input);
  const target = options.mqtt ? `${options.mqtt} (${options.mqttTopic}, JSON, QoS 1)` : config.inputTopic;
  display.log(`${settings.devices} devices at ${settings.ratePerSecond} samples/s into ${target}${settings.count ? `, ${count(settings.count)} samples` : ''}${options.duration ? `, for ${options.duration} s` : ''} (seed ${settings.seed}${settings.driftAfterMs !== undefined ? `, drift after ${settings.driftAfterMs / 1000} s` : ''})`);
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
  display.log(`sent ${count(simulator.sent())} samples to ${target}`);
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
    .option('--mqtt <url>', 'publish to this MQTT broker as JSON instead of writing to Kafka, for `streamgrad ingest mqtt` to bridge (password from STREAMGRAD_MQTT_PASSWORD)')
    .option('--mqtt-topic <pattern>', 'the MQTT topic of each device, {device} standing for its id', defaultMqttTopicPattern)
    .option('--mqtt-username <name>', 'the MQTT username')
    .option('--drift-after <seconds>', 'change the label function this long after the start (concept drift)', positive('--drift-after'))
    .addHelpText('after', example('  streamgrad simulate --config examples/iot.yaml --devices 500 --rate 2000 --duration 120 --drift-after 60'))
    .action(simulateCommand);
}
