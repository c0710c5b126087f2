import type { Kafka } from 'kafkajs';
import type { ExperimentConfig } from '../common/config.js';
import type { ConsoleDisplay } from '../common/console.js';
import { assertReachable, createKafka } from '../common/kafkaClient.js';
import { ensureExperimentTopics } from '../common/topics.js';
import { RunChildren, serveRunControl } from './runProcesses.js';
import { defaultMqttTopicPattern, startMqttSimulator, startSimulator, type Simulator, type SimulatorOptions } from './simulator.js';
import { progressLine, StatusReader, type StatusReport } from './status.js';
import { startDashboard, type Dashboard } from '../dashboard/server.js';

/** Options of {@link runExperiment}. */
export interface RunOptions {
  /** The experiment file: the children read it too. */
  readonly configFile: string;
  readonly config: ExperimentConfig;
  readonly workers: number;
  /** Also run the IoT simulator (the config's `simulator` block, with these overrides). */
  readonly simulate?: { readonly count?: number; readonly ratePerSecond?: number; readonly devices?: number; /** Publish to this MQTT broker (for an ingest bridge) instead of writing to Kafka. */ readonly mqtt?: string };
  /** Stop after this long (default: on Ctrl-C or SIGTERM only). */
  readonly durationSeconds?: number;
  /** Stop when this settles, too. */
  readonly until?: Promise<unknown>;
  /** Called with every status reading (every `progressIntervalMs`, default 1 s). */
  readonly onReport?: (report: StatusReport) => void;
  readonly progressIntervalMs?: number;
  readonly display: ConsoleDisplay;
  /** Serve the dashboard on this port (taken: any free port), or not at all (`false`). Default: not at all. */
  readonly dashboardPort?: number | false;
}

/** What a run did, for its summary. */
export interface RunSummary {
  readonly sent: number;
  readonly seconds: number;
  readonly status: StatusReport;
  readonly workers: number;
  /** Peak resident memory of each child (`ps`, `worker-1`, …) in MB, where the OS reports it (Linux). */
  readonly peakRssMb: Readonly<Record<string, number>>;
  /** Of each child's resident memory when it was stopped, the MB of file pages (libraries), shared between processes. */
  readonly fileBackedMb: Readonly<Record<string, number>>;
  /** CPU seconds (user + system) each child used, where the OS reports it (Linux). */
  readonly cpuSeconds: Readonly<Record<string, number>>;
}

/** How long the server gets to take the workers' last updates into a snapshot before it is stopped. */
const serverCatchUpMs = 15_000;

/** A run's failure or stop request, whichever comes first; the run then stops the same way either way. */
class StopSignal {
  failure: Error | undefined;
  private request: () => void = () => {};
  readonly requested = new Promise<void>((resolve) => (this.request = resolve));

  stop = (): void => this.request();

  fail = (error: Error): void => {
    this.failure ??= error;
    this.request();
  };
}

/** Starts the simulator of a run, when asked; a failing simulator stops the run. */
function startRunSimulator(kafka: Kafka, options: RunOptions, signal: StopSignal): Simulator | undefined {
  const { config, display } = options;
  if (!options.simulate) return undefined;
  const { mqtt, ...overrides } = options.simulate;
  const settings: SimulatorOptions = { ...config.simulator, ...Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)) };
  const simulator = mqtt
    ? startMqttSimulator(mqtt, { clientId: `streamgrad-simulate-${process.pid}`, protocolVersion: 5, reconnectPeriod: 1_000 }, defaultMqttTopicPattern, settings)
    : startSimulator(kafka, config.inputTopic, settings, config.input);
  simulator.done.catch((error: Error) => signal.fail(new Error(`the simulator failed: ${error.message}`)));
  display.log(`simulating ${settings.devices} devices at ${settings.ratePerSecond} samples/s into ${mqtt ? `${mqtt} (${defaultMqttTopicPattern}, JSON)` : config.inputTopic}${settings.count ? `, ${settings.count} samples` : ''}`);
  return simulator;
}

/** Reads the status every `progressIntervalMs` into the progress line; returns what stops it and the last reading. */
function followStatus(status: StatusReader, options: RunOptions, simulator: Simulator | undefined, signal: StopSignal): { last: () => StatusReport | undefined; stop: () => void } {
  const startedAt = Date.now();
  let last: StatusReport | undefined;
  let progress: ReturnType<typeof setInterval> | undefined;
  const show = (report: StatusReport) => {
    last = report;
    options.onReport?.(report);
    const elapsed = Math.round((Date.now() - startedAt) / 1000);
    options.display.progress(`${elapsed}s | ${progressLine(report)}${simulator ? ` | sent ${simulator.sent().toLocaleString('en-US')}` : ''}`);
  };
  // Any failure to start following stops the run the same way Ctrl-C does: the children are never left behind.
  status.start().then(() => {
    progress = setInterval(() => status.read().then(show, (error: Error) => options.display.log(`status: ${error.message}`)), options.progressIntervalMs ?? 1_000);
  }, signal.fail);
  return { last: () => last, stop: () => clearInterval(progress) };
}

/** Stops on SIGINT, SIGTERM, the end of `durationSeconds` or `until`; returns what removes those triggers. */
function stopTriggers(options: RunOptions, signal: StopSignal): () => void {
  const onSignal = (name: string) => () => {
    options.display.log(`${name}: stopping the simulator, the workers (committing their checkpoints) and the parameter server …`);
    signal.stop();
  };
  const onInt = onSignal('SIGINT');
  const onTerm = onSignal('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  const timer = options.durationSeconds === undefined ? undefined : setTimeout(signal.stop, options.durationSeconds * 1_000);
  void options.until?.then(signal.stop, signal.stop);
  return () => {
    clearTimeout(timer);
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  };
}

/** The run's dashboard: on the port asked for, or any free one when that is taken; its address on the display. */
async function startRunDashboard(kafka: Kafka, options: RunOptions): Promise<Dashboard | undefined> {
  const port = options.dashboardPort;
  if (port === undefined || port === false) return undefined;
  const dashboard = await startDashboard(kafka, options.config, port).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'EADDRINUSE') return startDashboard(kafka, options.config, 0);
    throw error;
  });
  options.display.log(`dashboard at ${dashboard.url}`);
  return dashboard;
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
  await assertReachable(config);
  const kafka = createKafka(config, `streamgrad-run-${process.pid}`);
  await ensureExperimentTopics(kafka, config);

  const dashboard = await startRunDashboard(kafka, options);
  const signal = new StopSignal();
  const children = new RunChildren(
    options.configFile,
    config.brokers,
    display,
    (error) => {
      display.log(error.message);
      signal.fail(error);
    },
  );
  const metricsPort = (offset: number) => (config.metricsPort === undefined ? [] : ['--metrics-port', String(config.metricsPort === 0 ? 0 : config.metricsPort + offset)]);
  let workerCount = 0;
  const addWorkers = (count: number): string[] =>
    Array.from({ length: count }, () => {
      workerCount += 1;
      const id = `worker-${workerCount}`;
      children.spawn(id, ['worker', '--worker-id', `${config.namespace}-${id}`, ...metricsPort(workerCount)]);
      return id;
    });

  const server = children.spawn('ps', ['ps', ...metricsPort(0)]);
  addWorkers(options.workers);
  display.log(`namespace ${config.namespace}: 1 parameter server and ${options.workers} worker(s) on ${config.inputTopic} (Ctrl-C stops them cleanly)`);
  const simulator = startRunSimulator(kafka, options, signal);
  const closeControl = await serveRunControl(config.namespace, (count) => {
    const added = addWorkers(count);
    display.log(`scale: started ${added.join(', ')}`);
    return { added, workers: workerCount };
  }, () => children.isStopping);
  const status = new StatusReader(kafka, config);
  const startedAt = Date.now();
  const following = followStatus(status, options, simulator, signal);
  const removeTriggers = stopTriggers(options, signal);

  await signal.requested;
  children.beginStop();
  closeControl();
  if (simulator) {
    simulator.stop();
    await simulator.done.catch(() => {});
  }
  await children.stop(children.all.filter((child) => child !== server));
  // The workers' last updates are committed: let the server take them into a snapshot before it stops.
  if (!signal.failure) await status.serverCaughtUp(serverCatchUpMs).catch((error: Error) => display.log(error.message));
  await children.stop([server]);
  following.stop();
  await dashboard?.close().catch(() => {});
  removeTriggers();
  let last = following.last();
  if (!signal.failure) {
    await status.catchUp().catch(() => {});
    last = await status.read().catch(() => last);
  }
  await status.stop().catch(() => {});
  children.release();
  display.done();
  if (signal.failure) throw signal.failure;
  if (!last) throw new Error(`no status of ${config.namespace} could be read`);
  return { sent: simulator?.sent() ?? 0, seconds: (Date.now() - startedAt) / 1000, status: last, workers: workerCount, peakRssMb: children.usage.peakRssMb, fileBackedMb: children.usage.fileBackedMb, cpuSeconds: children.usage.cpuSeconds };
}
