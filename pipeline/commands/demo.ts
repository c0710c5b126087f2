import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseExperiment, type ExperimentConfig } from '../common/config.js';
import { roleLogger } from '../common/log.js';
import { startIngestBridge, type IngestBridge } from '../ingest/bridge.js';
import { ConsoleDisplay } from '../common/console.js';
import { exportModel } from './export.js';
import { selectBackend } from '../common/backend.js';
import { createKafka } from '../common/kafkaClient.js';
import { acquireBroker, acquireMqttBroker } from './localBroker.js';
import { latestSnapshots } from '../common/modelStore.js';
import { simulatedFeatureCount, simulatorMqttMapping } from './simulator.js';
import { runExperiment } from './supervisor.js';
import { formatWindow, type PrequentialStatus } from './status.js';

/** Options of {@link runDemo}. */
export interface DemoOptions {
  readonly duration: number;
  readonly rate: number;
  readonly devices: number;
  readonly workers: number;
  /** Where the trained model is exported. */
  readonly out: string;
  /** Serve the dashboard on this port (any free one when taken), or not (`false`). */
  readonly dashboard: boolean;
  readonly dashboardPort: number;
  /** Devices publish over MQTT to a local Mosquitto (or MQTT_URL), and an ingest bridge writes them into Kafka. */
  readonly mqtt?: boolean;
}

/** The demo's MQTT edge: the broker, and the bridge into the experiment's input topic; `stop` ends both. */
interface MqttEdge {
  readonly url: string;
  readonly bridge: IngestBridge;
  stop(): Promise<void>;
}

async function startMqttEdge(url: string, release: () => Promise<void>, config: ExperimentConfig, display: ConsoleDisplay): Promise<MqttEdge> {
  try {
    const bridge = startIngestBridge(createKafka(config, 'streamgrad-demo-ingest'), config, config.ingest!.mqtt, roleLogger({ namespace: config.namespace, role: 'ingest' }));
    await bridge.ready;
    display.log(`devices → MQTT ${url} → streamgrad ingest → ${config.inputTopic} → training`);
    return { url, bridge, stop: async () => {
      await bridge.stop();
      await release();
    } };
  } catch (error) {
    await release();
    throw error;
  }
}

/**
 * The main job in one command: the local broker (unless KAFKA_BROKERS is set),
 * simulated IoT telemetry, one parameter server and `workers` worker processes
 * training a 16-32-1 MLP with the live progress line, for `duration` seconds
 * or until Ctrl-C; then a summary table and the model exported as a TF.js
 * LayersModel. It is `streamgrad run` on a fresh namespace, plus `export`.
 */
export async function runDemo(options: DemoOptions): Promise<void> {
  const display = new ConsoleDisplay('[demo]');
  const broker = await acquireBroker((line) => display.log(line));
  const mqttBroker = options.mqtt ? await acquireMqttBroker((line) => display.log(line)) : undefined;
  let edge: MqttEdge | undefined;
  try {
    const namespace = `demo-${Date.now()}`;
    const experiment = {
      brokers: broker.brokers,
      namespace,
      inputTopic: `${namespace}.telemetry`,
      inputPartitions: 4,
      model: { kind: 'mlp', features: simulatedFeatureCount, shards: 2, layers: [{ units: 32, activation: 'tanh' }], optimizer: { kind: 'adam', learningRate: 0.01 } },
      batchSize: 256,
      // The default warm-up (64 steps) is 13 s of partition 0 alone at the demo's 5,000 readings/s over 4 partitions.
      warmupSteps: 16,
      simulator: { devices: options.devices, ratePerSecond: options.rate, seed: 7 },
      ...(mqttBroker ? { ingest: { mqtt: simulatorMqttMapping(mqttBroker.url) } } : {}),
    };
    const config = parseExperiment(experiment);
    edge = mqttBroker && (await startMqttEdge(mqttBroker.url, () => mqttBroker.release(), config, display));
    const configFile = join(mkdtempSync(join(tmpdir(), 'streamgrad-demo-')), 'experiment.json');
    writeFileSync(configFile, JSON.stringify(experiment, null, 2));
    display.log(`namespace ${namespace} (experiment file ${configFile})`);
    const losses: number[] = [];
    const onReport = (report: { loss: number | undefined }) => {
      if (report.loss !== undefined) losses.push(report.loss);
    };
    const summary = await runExperiment({ configFile, config, workers: options.workers, simulate: edge ? { mqtt: edge.url } : {}, durationSeconds: options.duration, display, onReport, dashboardPort: options.dashboard ? options.dashboardPort : false });

    const kafka = createKafka({ brokers: broker.brokers }, 'streamgrad-demo');
    const snapshots = await latestSnapshots(kafka, namespace);
    let exported = '(no snapshot to export)';
    if (snapshots.size === config.model.shards) {
      await selectBackend({ backend: config.backend });
      exported = relative(process.cwd(), (await exportModel(config.model, snapshots, options.out)).modelJson) || options.out;
    }
    const status = summary.status;
    const shard0 = status.shards[0];
    const rows: Array<[string, string]> = [
      ['namespace', namespace],
      ['ran for', `${Math.round(summary.seconds)} s, 1 parameter server, ${summary.workers} worker(s)`],
      ['samples simulated', `${summary.sent.toLocaleString('en-US')}${edge ? `, over MQTT: ${ingestLine(edge.bridge)}` : ''}`],
      ['samples applied', (shard0?.samplesApplied ?? 0).toLocaleString('en-US')],
      // Over MQTT the bridge dead-letters a reading with a dropped-out sensor before Kafka; directly, the workers do.
      ['dead letters (sensor dropouts)', edge ? `${(status.deadLetters + edge.bridge.figures().deadLetters).toLocaleString('en-US')} (${edge.bridge.figures().deadLetters.toLocaleString('en-US')} by the MQTT bridge, ${status.deadLetters.toLocaleString('en-US')} by the workers)` : status.deadLetters.toLocaleString('en-US')],
      ['throughput', `${Math.round((shard0?.samplesApplied ?? 0) / summary.seconds).toLocaleString('en-US')} samples/s`],
      ['loss: first reading → lowest → last', losses.length === 0 ? '-' : `${losses[0]!.toFixed(4)} → ${Math.min(...losses).toFixed(4)} → ${losses.at(-1)!.toFixed(4)}`],
      ...prequentialRows(status.prequential, config.prequential.maxOutOfOrdernessMs),
      ['model versions (per shard)', status.shards.map((s) => s.version).join('/') || '-'],
      ['freshness of the last snapshot', `${Math.max(0, ...status.shards.map((s) => s.freshnessMs))} ms`],
      // The file pages (node's and libtensorflow's code) are shared between the processes: what a process adds is the rest.
      ['peak memory (RSS)', Object.entries(summary.peakRssMb).map(([name, mb]) => `${name} ${Math.round(mb)} MB${summary.fileBackedMb[name] === undefined ? '' : ` (${Math.round(summary.fileBackedMb[name])} MB shared library pages)`}`).join(', ') || '-'],
      ['exported model', exported],
    ];
    const width = Math.max(...rows.map(([k]) => k.length));
    console.log(['', 'streamgrad demo summary', '-'.repeat(width + 40), ...rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`), ''].join('\n'));
    console.log(`Load it in TF.js: await tf.loadLayersModel('file://${exported}')   Topics: ${namespace}.*`);
  } finally {
    await edge?.stop();
    await broker.release();
  }
}

/** What the ingest bridge did: messages in, samples out, dead letters. */
function ingestLine(bridge: IngestBridge): string {
  const figures = bridge.figures();
  return `${figures.messagesIn.toLocaleString('en-US')} messages in, ${figures.samplesOut.toLocaleString('en-US')} samples to Kafka, ${figures.deadLetters.toLocaleString('en-US')} dead-lettered by the bridge`;
}

/** The demo summary's prequential rows: the first, best and last closed event-time windows. */
function prequentialRows(prequential: PrequentialStatus | undefined, latenessMs: number): Array<[string, string]> {
  if (!prequential?.first) return [['prequential windows', `none closed yet (a window closes ${latenessMs / 1000} s of event time after its end)`]];
  const { first, best, last, classifier, windowMs } = prequential;
  return [
    [`prequential, ${windowMs / 1000} s windows: first`, formatWindow(first, classifier)],
    ['  best', formatWindow(best!, classifier)],
    ['  last', formatWindow(last!, classifier)],
  ];
}
