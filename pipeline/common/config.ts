import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { mqttIngestSchema } from '../ingest/mapping.js';
import { validateOptions } from '../../operators/validateOptions.js';
import { ConfigError } from '../../schemas/errors.js';
import { backendNames } from './backend.js';
import { modelSpecSchema } from './model.js';
import { oneSecretSource, oneSecretSourceMessage, secretSourceSchema, secretSourceShape } from './secrets.js';

/** Policy `retrain` needs a staleness bound of at least this many times the budget of updates in flight (see `parseExperiment`). */
export const minimumBoundFactor = 4;

/** The staleness bound when the file gives none: the least that policy `retrain` takes (see `maxInFlightUpdates`). */
function defaultStalenessBoundFor(maxInFlightUpdates: number): number {
  return minimumBoundFactor * Math.max(1, maxInFlightUpdates);
}

const defaultMaxInFlightUpdates = 16;
const defaultStalenessBound = defaultStalenessBoundFor(defaultMaxInFlightUpdates);

/** Micro-batches per update with `deltas`, unless the file says: measured in BENCHMARKS.md (*Several steps per update*). */
export const defaultStepsPerUpdate = 8;

/**
 * The local optimizer steps a worker takes on a batch of `samples` (an update's sample count), `batchSize` at most
 * each: as few as that allows, on parts of nearly equal size. The server counts an update's steps the same way.
 */
export function localStepsIn(samples: number, batchSize: number): number {
  return Math.max(1, Math.ceil(samples / batchSize));
}

/** Whether a raw configuration sets `server.staleness.bound` itself. */
function boundGiven(input: unknown): boolean {
  const server = typeof input === 'object' && input !== null ? (input as { server?: unknown }).server : undefined;
  const staleness = typeof server === 'object' && server !== null ? (server as { staleness?: unknown }).staleness : undefined;
  return typeof staleness === 'object' && staleness !== null && (staleness as { bound?: unknown }).bound !== undefined;
}

/**
 * One experiment: what the workers, the parameter server, the simulator and every
 * CLI command read, from one file (JSON or YAML), validated when a process starts.
 * Times in ms, sizes in records.
 */
export const experimentSchema = z.object({
  /** Kafka bootstrap servers; KAFKA_BROKERS overrides them. */
  brokers: z.array(z.string().min(1)).min(1).default(['127.0.0.1:19092']),
  /**
   * How every process connects to the brokers: TLS (`tls`) and SASL authentication (`sasl`). Plaintext without
   * credentials when absent. File paths are relative to the working directory.
   */
  security: z
    .object({
      tls: z
        .object({
          /** TLS on (the default once `tls` is given), or off. */
          enabled: z.boolean().default(true),
          /** PEM file of the CA certificates the brokers' certificates are checked against (default: Node's own CAs). */
          caFile: z.string().min(1).optional(),
          /** PEM certificate and private key of this client, for brokers that ask for mutual TLS: both or neither. */
          certFile: z.string().min(1).optional(),
          keyFile: z.string().min(1).optional(),
          /** Where the passphrase of an encrypted `keyFile` is: `{ "env": "VAR" }` or `{ "file": "path" }`. */
          keyPassword: secretSourceSchema.optional(),
        })
        .strict()
        .refine((tls) => (tls.certFile === undefined) === (tls.keyFile === undefined), "give both 'certFile' and 'keyFile', or neither")
        .refine((tls) => tls.keyPassword === undefined || tls.keyFile !== undefined, "'keyPassword' is the passphrase of 'keyFile': give 'keyFile' too")
        .optional(),
      sasl: z
        .object({
          mechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']),
          username: z.string().min(1),
          /** Where the password is: `{ "env": "VAR" }` or `{ "file": "path" }`. */
          password: secretSourceSchema,
        })
        .strict()
        .optional(),
    })
    .strict()
    .optional(),
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
  /**
   * With `model.updates: 'deltas'`: a lane's batch holds up to this many micro-batches, the worker's optimizer takes
   * one step per micro-batch, and the lane sends their summed change as one update. Fewer, larger updates cost the
   * worker, the broker and the server less per sample (most for large models); the other workers see the steps later.
   * Unless given: {@link defaultStepsPerUpdate} with `deltas` (fewer if a lane's `maxInFlight` holds fewer), 1 with
   * `gradients` and in sync mode (whose batches wait for their last record: a step at a time, as it says).
   */
  stepsPerUpdate: z.number().int().positive().optional(),
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
  maxInFlightUpdates: z.number().int().nonnegative().default(defaultMaxInFlightUpdates),
  /**
   * The job's first `warmupSteps` micro-batches (times `batchSize` samples) are trained by one lane alone, that of the
   * input's partition 0; every other lane waits until shard 0's snapshots hold them (see `pipeline/worker/warmUp.ts`).
   * 0: every lane trains from the start. Not in replays of a range.
   */
  warmupSteps: z.number().int().nonnegative().default(64),
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
      /**
       * The job's staleness bound (the updates applied to a shard between the version an update was computed on and
       * the update itself), and what keeps it. `retrain`: a hard bound on every applied update, kept by the workers,
       * which abort the transaction of an update that could be applied beyond it and train its samples again on a
       * fresher model (nothing dropped). `apply`: no bound; `scale`: the server scales the learning rate of a staler
       * update by 1 / (1 + staleness); `drop`: the server drops it (its samples counted, not trained). The bound
       * defaults to four times `maxInFlightUpdates`.
       */
      staleness: z
        .object({ policy: z.enum(['retrain', 'apply', 'scale', 'drop']).default('retrain'), bound: z.number().int().nonnegative().default(defaultStalenessBound) })
        .default({ policy: 'retrain', bound: defaultStalenessBound }),
      /** Clip each update's mean gradient to this global L2 norm. */
      clipNorm: z.number().positive().optional(),
      /**
       * Refuse (as ABSURD, counted and dead-lettered) an update whose mean gradient has an element beyond this
       * magnitude. The default only stops values no optimizer survives (Adam squares them in float32); a diverging
       * model's honest gradients are applied.
       */
      maxAbsGradient: z.number().positive().default(1e15),
    })
    .default({ snapshotEveryUpdates: 20, snapshotIntervalMs: 200, snapshotIdleMs: 10, staleness: { policy: 'retrain', bound: defaultStalenessBound }, maxAbsGradient: 1e15 }),
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
  /**
   * Signed parameter updates: workers sign every update with the first key (HMAC-SHA-256, the key's id in a header),
   * and the server refuses any update not signed with one of the keys. Each key's secret is read from an environment
   * variable (`env`) or a file (`file`), never from this file. Off when absent.
   */
  updateSigning: z
    .object({
      keys: z
        .array(
          z
            .object({ id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'a key id is 1 to 64 letters, digits, dots, dashes or underscores'), ...secretSourceShape })
            .strict()
            .refine(oneSecretSource, oneSecretSourceMessage),
        )
        .min(1)
        .refine((keys) => new Set(keys.map((key) => key.id)).size === keys.length, 'key ids must differ'),
    })
    .strict()
    .optional(),
  /** Where `streamgrad ingest` reads device messages, and how each becomes a TrainingSample. */
  ingest: z.object({ mqtt: mqttIngestSchema }).strict().optional(),
  /** Serve Prometheus metrics on this port at /metrics (0: any free port). Off when absent. */
  metricsPort: z.number().int().min(0).max(65_535).optional(),
  workerId: z.string().min(1).optional(),
  /** A process that stops heartbeating loses its partitions after this long; the group then hands them to the others. */
  sessionTimeoutMs: z.number().int().min(6_000).default(10_000),
});

export type ExperimentConfig = Omit<z.output<typeof experimentSchema>, 'stepsPerUpdate'> & { readonly stepsPerUpdate: number };

/** Checks a namespace given outside the file (`--namespace`) by the file's own rule; `field` names the option in the error. */
export function parseNamespace(value: string, field: string): string {
  const parsed = experimentSchema.shape.namespace.safeParse(value);
  if (!parsed.success) throw new ConfigError(field, `'${value}': ${parsed.error.issues[0]!.message}`);
  return parsed.data;
}

/** Validates an experiment configuration object; the error names the bad field (e.g. `config.model.layers.0.units`). */
export function parseExperiment(input: unknown): ExperimentConfig {
  const parsed = validateOptions('config', experimentSchema, input);
  const stepsPerUpdate = parsed.stepsPerUpdate ?? (parsed.model.updates === 'deltas' && !parsed.sync ? Math.max(1, Math.min(defaultStepsPerUpdate, Math.floor(parsed.maxInFlight / parsed.batchSize))) : 1);
  const withSteps = { ...parsed, stepsPerUpdate };
  const config = boundGiven(input) ? withSteps : { ...withSteps, server: { ...parsed.server, staleness: { ...parsed.server.staleness, bound: defaultStalenessBoundFor(parsed.maxInFlightUpdates) } } };
  const { policy, bound } = config.server.staleness;
  // The workers check the bound by offsets, which also count the transaction markers (up to one per update) and the
  // records of aborted checkpoints: the updates in flight alone reach twice the budget in offsets, and a bound below
  // twice that again has most updates trained again.
  if (policy === 'retrain' && !config.sync && (config.maxInFlightUpdates === 0 || bound < minimumBoundFactor * config.maxInFlightUpdates)) {
    throw new ConfigError(
      'config.server.staleness.bound',
      `${bound} is too tight for policy 'retrain' with maxInFlightUpdates ${config.maxInFlightUpdates}: it needs maxInFlightUpdates ≥ 1 and a bound of at least ${minimumBoundFactor} times that (${minimumBoundFactor * Math.max(1, config.maxInFlightUpdates)}); lower maxInFlightUpdates, or pick the policy 'apply', 'scale' or 'drop'`,
    );
  }
  if (config.batchSize * config.stepsPerUpdate > config.maxInFlight) {
    throw new ConfigError('config.maxInFlight', `${config.maxInFlight} records per lane cannot hold one batch of batchSize ${config.batchSize} × stepsPerUpdate ${config.stepsPerUpdate}: raise maxInFlight or lower the others`);
  }
  if (config.stepsPerUpdate > 1 && config.model.updates !== 'deltas') {
    throw new ConfigError('config.stepsPerUpdate', `${config.stepsPerUpdate} needs model.updates 'deltas': with 'gradients' the server takes the steps, one per update`);
  }
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
