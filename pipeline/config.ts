import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { validateOptions } from '../operators/validateOptions.js';
import { ConfigError } from '../schemas/errors.js';
import { backendNames } from './backend.js';
import { modelSpecSchema } from './model.js';

/**
 * The configuration of a worker, validated when it starts. Times in ms, sizes in records.
 * One file (JSON or YAML) configures a whole experiment.
 */
export const workerConfigSchema = z.object({
  /** Kafka bootstrap servers; KAFKA_BROKERS overrides them. */
  brokers: z.array(z.string().min(1)).min(1).default(['127.0.0.1:19092']),
  /** The experiment namespace: topics `<ns>.updates`, `<ns>.model`, `<ns>.dlq`. */
  namespace: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, dots, dashes and underscores only'),
  /** The topic of TrainingSamples. */
  inputTopic: z.string().min(1),
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
  /** A lane waits while more of its updates than this are not yet in a snapshot it has seen. */
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
      /** … or this long after the last one, whichever comes first. */
      snapshotIntervalMs: z.number().int().positive().default(200),
      staleness: z
        .object({ policy: z.enum(['apply', 'scale', 'drop']).default('apply'), bound: z.number().int().nonnegative().default(16) })
        .default({ policy: 'apply', bound: 16 }),
      /** Clip each update's mean gradient to this global L2 norm. */
      clipNorm: z.number().positive().optional(),
    })
    .default({ snapshotEveryUpdates: 20, snapshotIntervalMs: 200, staleness: { policy: 'apply', bound: 16 } }),
  workerId: z.string().min(1).optional(),
  /** A process that stops heartbeating loses its partitions after this long; the group then hands them to the others. */
  sessionTimeoutMs: z.number().int().min(6_000).default(10_000),
});

export type WorkerConfig = z.output<typeof workerConfigSchema>;

/** Validates a worker configuration object; the error names the bad field (e.g. `config.model.layers.0.units`). */
export function parseWorkerConfig(input: unknown): WorkerConfig {
  const config = validateOptions('config', workerConfigSchema, input);
  const brokers = process.env.KAFKA_BROKERS?.trim();
  return brokers ? { ...config, brokers: brokers.split(',') } : config;
}

/** Reads and validates a JSON or YAML configuration file. */
export function loadWorkerConfig(path: string): WorkerConfig {
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
  return parseWorkerConfig(parsed);
}
