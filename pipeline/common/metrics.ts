import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** A parameter server's Prometheus metrics, in a registry of its own. */
export interface ServerMetrics {
  readonly registry: Registry;
  /** ms from a sample's append to Kafka until the commit of the first snapshot that includes its gradient (per update, its oldest sample). */
  readonly freshness: Histogram<'shard'>;
  /** Server version minus an update's base version, when the update arrives. */
  readonly staleness: Histogram<'shard'>;
  readonly updates: Counter<'shard' | 'outcome'>;
  /** Samples taken in by outcome: applied, dropped for staleness, or refused. */
  readonly samples: Counter<'shard' | 'outcome'>;
  /** Update records refused, by reason (each is in `<ns>.ps.dlq`). */
  readonly refused: Counter<'shard' | 'reason'>;
  readonly deadLetters: Counter<'shard'>;
  /** The prequential scores of the last closed event-time window (shard 0): loss, mae, rmse; accuracy for classifiers. */
  readonly prequential: Gauge<'score'>;
}

/** A worker's Prometheus metrics, in a registry of its own. */
export interface WorkerMetrics {
  readonly registry: Registry;
  /** Samples that went into a gradient step. */
  readonly samples: Counter;
  /** Input records sent to `<ns>.dlq`. */
  readonly deadLetters: Counter;
  /** Seconds of one gradient step (forward, backward, gradients copied out). */
  readonly stepSeconds: Histogram;
  /** Records of the partition not yet made into an output: high watermark minus processed frontier. */
  readonly lag: Gauge<'topic' | 'partition'>;
  /** Checkpoints aborted because an update in them could have been applied beyond the staleness bound, and the records their lanes read again. */
  readonly retrains: Counter;
  readonly rereadRecords: Counter;
  /** Seconds lanes spent waiting before a gradient step, by what they waited for (see {@link LaneWait}). */
  readonly waitSeconds: Counter<'reason'>;
  /** Seconds of one checkpoint: its outputs written and its offsets committed (one transaction in exactly-once mode). */
  readonly checkpointSeconds: Histogram;
}

/**
 * What a lane waits for before a gradient step: `warm-up`, the joint warm-up's leading lane; `in-flight`, a snapshot
 * that holds its updates (the lane is at its share of updates in flight); `behind`, a snapshot that brings the
 * replica within the staleness bound.
 */
export type LaneWait = 'warm-up' | 'in-flight' | 'behind';

function registryOf(labels: Record<string, string>, backend: string, role: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  const info = new Gauge({ name: 'streamgrad_backend_info', help: `The TensorFlow.js backend of this ${role} (value 1, backend as a label)`, labelNames: ['backend'], registers: [registry] });
  info.set({ backend }, 1);
  return registry;
}

export function createServerMetrics(namespace: string, backend: string): ServerMetrics {
  const registry = registryOf({ namespace, role: 'ps' }, backend, 'parameter server');
  return {
    registry,
    freshness: new Histogram({
      name: 'streamgrad_freshness_ms',
      help: 'Time from a sample append to the commit of the first snapshot that includes its gradient, in ms',
      labelNames: ['shard'],
      buckets: [25, 50, 100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600],
      registers: [registry],
    }),
    staleness: new Histogram({
      name: 'streamgrad_update_staleness',
      help: 'Server version minus the base version of an arriving update',
      labelNames: ['shard'],
      buckets: [0, 1, 2, 4, 8, 16, 32, 64, 128],
      registers: [registry],
    }),
    updates: new Counter({ name: 'streamgrad_updates_total', help: 'Update records taken in, by outcome (applied, dropped, counted, refused)', labelNames: ['shard', 'outcome'], registers: [registry] }),
    samples: new Counter({ name: 'streamgrad_server_samples_total', help: 'Samples whose gradients were taken in, by outcome (applied, dropped, refused)', labelNames: ['shard', 'outcome'], registers: [registry] }),
    refused: new Counter({ name: 'streamgrad_updates_refused_total', help: 'Update records the server refused, by reason; each is in <ns>.ps.dlq', labelNames: ['shard', 'reason'], registers: [registry] }),
    deadLetters: new Counter({ name: 'streamgrad_server_dead_letters_total', help: 'Dead-lettered input records accounted for in snapshots', labelNames: ['shard'], registers: [registry] }),
    prequential: new Gauge({
      name: 'streamgrad_prequential',
      help: 'Scores of the last closed event-time window, each sample scored before it was trained on: loss, mae, rmse (accuracy for classifiers), and window_start (s since the epoch)',
      labelNames: ['score'],
      registers: [registry],
    }),
  };
}

/**
 * `lag()` is read at each scrape: the lag of every partition the worker owns; so is `foreignStaleness()`: the other
 * workers' updates the worker's steps miss (its estimate, which lowers its optimizer's momentum).
 */
export function createWorkerMetrics(namespace: string, workerId: string, backend: string, lag: () => Iterable<{ topic: string; partition: number; lag: number }>, foreignStaleness: () => number = () => 0): WorkerMetrics {
  const registry = registryOf({ namespace, role: 'worker', worker: workerId }, backend, 'worker');
  const foreignGauge: Gauge = new Gauge({
    name: 'streamgrad_foreign_staleness',
    help: "Updates of other workers that this worker's steps miss (a moving average); it lowers the momentum of the worker's optimizer",
    registers: [registry],
    collect() {
      foreignGauge.set(foreignStaleness());
    },
  });
  const lagGauge: Gauge<'topic' | 'partition'> = new Gauge({
    name: 'streamgrad_consumer_lag',
    help: 'Records of an owned input partition not yet trained on: high watermark minus the processed frontier',
    labelNames: ['topic', 'partition'],
    registers: [registry],
    collect() {
      lagGauge.reset();
      for (const one of lag()) lagGauge.set({ topic: one.topic, partition: String(one.partition) }, one.lag);
    },
  });
  return {
    registry,
    samples: new Counter({ name: 'streamgrad_samples_total', help: 'Samples that went into a gradient step', registers: [registry] }),
    deadLetters: new Counter({ name: 'streamgrad_dead_letters_total', help: 'Input records sent to the dead-letter topic', registers: [registry] }),
    stepSeconds: new Histogram({
      name: 'streamgrad_step_seconds',
      help: 'Duration of one gradient step on a micro-batch, in seconds',
      buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1],
      registers: [registry],
    }),
    lag: lagGauge,
    retrains: new Counter({ name: 'streamgrad_staleness_retrains_total', help: 'Checkpoints aborted because an update in them could have been applied beyond the staleness bound (policy retrain)', registers: [registry] }),
    rereadRecords: new Counter({ name: 'streamgrad_staleness_reread_records_total', help: 'Input records read again after such an abort: those of the aborted checkpoint, trained again, and those read past it', registers: [registry] }),
    waitSeconds: new Counter({ name: 'streamgrad_lane_wait_seconds_total', help: 'Seconds lanes waited before a gradient step, by reason: warm-up (the joint warm-up), in-flight (for a snapshot holding their updates), behind (for a snapshot within the staleness bound)', labelNames: ['reason'], registers: [registry] }),
    checkpointSeconds: new Histogram({
      name: 'streamgrad_checkpoint_seconds',
      help: "Duration of one checkpoint: its outputs written and offsets committed (one transaction in exactly-once mode), in seconds",
      buckets: [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
      registers: [registry],
    }),
  };
}

/** A running `/metrics` endpoint. */
export interface MetricsEndpoint {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

/** Serves `registry` in the Prometheus text format at `http://127.0.0.1:<port>/metrics` (port 0: any free port). */
export async function serveMetrics(registry: Registry, port: number, host = '127.0.0.1'): Promise<MetricsEndpoint> {
  const server: Server = createServer((request, response) => {
    if (request.url?.split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (error: Error) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`${error.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    port: bound,
    url: `http://${host}:${bound}/metrics`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
