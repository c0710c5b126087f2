import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { validateOptions } from '../../operators/validateOptions.js';
import { ConfigError } from '../../schemas/errors.js';
import { backendNames } from './backend.js';
import { modelSpecSchema } from './model.js';

/**
 * One experiment: what the workers, the parameter server, the simulator and every
 * CLI command read, from one file (JSON or YAML), validated when a process starts.
 * Times in ms, sizes in records.
 */
export const experimentSchema = z.object({
  /** Kafka bootstrap servers; KAFKA_BROKERS overrides them. */
  brokers: z.array(z.string().min(1)).min(1).default(['127.0.0.1:19092']),
  /** The experiment namespace: topics `<ns>.updates`, `<ns>.model`, `<ns>.dlq`. */
  namespace: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, dots, dashes and underscores only'),
  /** The topic of TrainingSamples. */
  inputTopic: z.string().min(1),
  /** The input topic's partitions when `streamgrad run` or `simulate` creates it (`scale` grows it later). */
  inputPartitions: z.number().int().positive().default(4),
  input: z
    .object({
      framing: z.enum(['raw', 'confluent']).default('raw'),
      schemaId: z.number().int().nonnegative().optional(),
      maxRecordBytes: z.number().int().positive().default(1024 * 1024),
    })
    .default({ framing: 'raw', maxRecordBytes: 1024 * 1024 }),
  model: modelSpecSchema,
  /** The micro-batch: at most this many samples … */
  batchSize: z.number().int().positive().default(256),
  /** … flushed after this long at the latest. */
  batchMaxWaitMs: z.number().positive().default(50),
  /** How gradients travel to the parameter server. */
  encoding: z.enum(['FP32', 'FP16', 'INT8']).default('FP32'),
  /** Commit a checkpoint at least this often. */
  checkpointIntervalMs: z.number().int().positive().default(1_000),
  /** Records a lane holds before its partition is paused. */
  maxInFlight: z.number().int().positive().default(10_000),
  /**
   * The job's budget of updates not yet in a snapshot, over all lanes of all workers: each lane (input partition)
   * has an equal share, at least one, and waits while more of its updates than that are not in a snapshot it has seen.
   */
  maxInFlightUpdates: z.number().int().nonnegative().default(16),
  /**
   * One update at a time per lane, each waiting until a snapshot reflects it, and batches cut by
   * count alone (a partial batch waits for more records or the end of a bounded input). With one
   * worker and one input partition, runs over the same records give bit-identical models.
   */
  sync: z.boolean().default(false),
  backend: z.enum(['auto', ...backendNames]).default('auto'),
  /** The parameter server's settings. */
  server: z
    .object({
      /** Publish a snapshot after this many updates … */
      snapshotEveryUpdates: z.number().int().positive().default(20),
      /** … or this long after the last one, whichever comes first … */
      snapshotIntervalMs: z.number().int().positive().default(200),
      /** … or once no update has come for this long: workers at their share of updates in flight wait for it. */
      snapshotIdleMs: z.number().int().positive().default(10),
      staleness: z
        .object({ policy: z.enum(['apply', 'scale', 'drop']).default('apply'), bound: z.number().int().nonnegative().default(16) })
        .default({ policy: 'apply', bound: 16 }),
      /** Clip each update's mean gradient to this global L2 norm. */
      clipNorm: z.number().positive().optional(),
      /**
       * Refuse (as ABSURD, counted and dead-lettered) an update whose mean gradient has an element beyond this
       * magnitude. The default only stops values no optimizer survives (Adam squares them in float32); a diverging
       * model's honest gradients are applied.
       */
      maxAbsGradient: z.number().positive().default(1e15),
    })
    .default({ snapshotEveryUpdates: 20, snapshotIntervalMs: 200, snapshotIdleMs: 10, staleness: { policy: 'apply', bound: 16 }, maxAbsGradient: 1e15 }),
  /** The IoT telemetry simulator of `streamgrad simulate` and `run --simulate`. */
  simulator: z
    .object({
      devices: z.number().int().positive().default(200),
      ratePerSecond: z.number().positive().default(5_000),
      seed: z.number().int().default(7),
      /** A simulated day lasts this long, so daily cycles show in a short run. */
      dayMs: z.number().int().positive().default(60_000),
      /** From this many ms after the start, the label function changes (concept drift). */
      driftAfterMs: z.number().int().nonnegative().optional(),
      /** Share of readings with one sensor dropped out (NaN): they end in `<ns>.dlq`. */
      dropoutRate: z.number().min(0).max(1).default(0.001),
      /** `skewed`: features multiplied by factors from 0.01 to 1,000 (raw sensors' own scales), for trying `model.normalize`. */
      featureScales: z.enum(['unit', 'skewed']).default('unit'),
    })
    .default({ devices: 200, ratePerSecond: 5_000, seed: 7, dayMs: 60_000, dropoutRate: 0.001, featureScales: 'unit' }),
  /** Prequential evaluation: every sample scored before it is trained on, summed per tumbling window of event time. */
  prequential: z
    .object({
      /** The window size, in ms of event time. */
      windowMs: z.number().int().positive().default(10_000),
      /** A window closes (its scores are final) once a sample this much later in event time than its end was scored. */
      maxOutOfOrdernessMs: z.number().int().nonnegative().default(5_000),
    })
    .default({ windowMs: 10_000, maxOutOfOrdernessMs: 5_000 }),
  /** Serve Prometheus metrics on this port at /metrics (0: any free port). Off when absent. */
  metricsPort: z.number().int().min(0).max(65_535).optional(),
  workerId: z.string().min(1).optional(),
  /** A process that stops heartbeating loses its partitions after this long; the group then hands them to the others. */
  sessionTimeoutMs: z.number().int().min(6_000).default(10_000),
});

export type ExperimentConfig = z.output<typeof experimentSchema>;

/** Checks a namespace given outside the file (`--namespace`) by the file's own rule; `field` names the option in the error. */
export function parseNamespace(value: string, field: string): string {
  const parsed = experimentSchema.shape.namespace.safeParse(value);
  if (!parsed.success) throw new ConfigError(field, `'${value}': ${parsed.error.issues[0]!.message}`);
  return parsed.data;
}

/** Validates an experiment configuration object; the error names the bad field (e.g. `config.model.layers.0.units`). */
export function parseExperiment(input: unknown): ExperimentConfig {
  const config = validateOptions('config', experimentSchema, input);
  const brokers = process.env.KAFKA_BROKERS?.trim();
  return brokers ? { ...config, brokers: brokers.split(',') } : config;
}

/** Reads and validates a JSON or YAML configuration file. */
export function loadExperiment(path: string): ExperimentConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new ConfigError('file', `cannot read ${path}: ${(cause as Error).message}`, cause);
  }
  let parsed: unknown;
  try {
    parsed = /\.ya?ml$/i.test(path) ? parseYaml(text) : JSON.parse(text);
  } catch (cause) {
    throw new ConfigError('file', `${path} is not valid ${/\.ya?ml$/i.test(path) ? 'YAML' : 'JSON'}: ${(cause as Error).message}`, cause);
  }
  try {
    return parseExperiment(parsed);
  } catch (error) {
    throw error instanceof ConfigError ? new ConfigError(error.field, `${error.detail} (in ${path})`, error) : error;
  }
}
