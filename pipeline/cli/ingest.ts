import type { Command } from 'commander';
import { ConfigError } from '../../schemas/errors.js';
import { loadExperiment } from '../common/config.js';
import { ConsoleDisplay, formatCount as count } from '../common/console.js';
import { assertReachable, createKafka } from '../common/kafkaClient.js';
import { roleLogger } from '../common/log.js';
import { serveMetrics } from '../common/metrics.js';
import { startIngestBridge, type IngestBridge } from '../ingest/bridge.js';
import { configOption, example, metricsOption } from './options.js';
import { exitWhenDone } from './service.js';

async function ingestMqttCommand(options: { config: string; metricsPort?: number }): Promise<void> {
  const config = loadExperiment(options.config);
  const settings = config.ingest?.mqtt;
  if (settings === undefined) throw new ConfigError('config.ingest.mqtt', `${options.config} has no MQTT mapping: add ingest.mqtt (url, topics, deviceId, features, label; see examples/iot-mqtt.yaml)`);
  await assertReachable(config);
  const kafka = createKafka(config, `streamgrad-ingest-${process.pid}`);
  const display = new ConsoleDisplay('[ingest]');
  const logger = roleLogger({ namespace: config.namespace, role: 'ingest' });
  const bridge = startIngestBridge(kafka, config, settings, logger);
  // From the start: a stop while connecting still ends cleanly (nothing is acknowledged before Kafka holds it).
  const stop = () => void bridge.stop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let progress: NodeJS.Timeout | undefined;
  let endpoint: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  try {
    await bridge.ready;
    const port = options.metricsPort ?? config.metricsPort;
    endpoint = port === undefined ? undefined : await serveMetrics(bridge.registry, port);
    display.log(`MQTT ${settings.url} ${settings.topics.join(', ')} (QoS ${settings.qos}) → ${config.inputTopic}${endpoint ? `; Prometheus metrics at ${endpoint.url}` : ''} (Ctrl-C stops after writing and acknowledging what it holds)`);
    progress = showProgress(bridge, display);
    await bridge.done;
  } finally {
    clearInterval(progress);
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await endpoint?.close();
  }
  const figures = bridge.figures();
  display.done();
  display.log(`stopped: ${count(figures.messagesIn)} messages in, ${count(figures.samplesOut)} samples to ${config.inputTopic}, ${count(figures.deadLetters)} dead letters`);
  exitWhenDone((line) => display.log(line));
}

/** One progress line a second: messages/s, counts, pending, the MQTT connection. */
function showProgress(bridge: IngestBridge, display: ConsoleDisplay): NodeJS.Timeout {
  const startedAt = Date.now();
  let last = { at: startedAt, out: 0 };
  return setInterval(() => {
    const figures = bridge.figures();
    const now = Date.now();
    const rate = ((figures.samplesOut + figures.deadLetters - last.out) * 1_000) / Math.max(1, now - last.at);
    last = { at: now, out: figures.samplesOut + figures.deadLetters };
    display.progress(`${Math.round((now - startedAt) / 1000)}s | ${count(Math.round(rate))} msg/s | in ${count(figures.messagesIn)} | samples ${count(figures.samplesOut)} | dead letters ${count(figures.deadLetters)} | pending ${count(figures.pending)} | MQTT ${figures.mqttConnected ? 'connected' : `reconnecting (${figures.reconnects})`}`);
  }, 1_000);
}

/** `streamgrad ingest mqtt`. */
export function addIngestCommand(program: Command): void {
  const ingest = program
    .command('ingest')
    .description('bridges from device protocols into the experiment\'s input topic')
    .addHelpText('after', example('  streamgrad ingest mqtt --config examples/iot-mqtt.yaml'));
  ingest
    .command('mqtt')
    .description('subscribe to an MQTT broker (ingest.mqtt of the config) and write each message as a TrainingSample keyed by device id to the input topic; messages that do not map go to <ns>.dlq with the payload and the reason. QoS 1 messages are acknowledged once Kafka holds their record')
    .addOption(configOption())
    .addOption(metricsOption())
    .addHelpText('after', example('  infra/mqtt/start\n  streamgrad ingest mqtt --config examples/iot-mqtt.yaml\n  streamgrad simulate --config examples/iot-mqtt.yaml --mqtt mqtt://127.0.0.1:11883'))
    .action(ingestMqttCommand);
}
