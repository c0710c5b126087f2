import { randomUUID } from 'node:crypto';
import { testBrokers } from './kafka.js';

/** The environment of a `streamgrad` child process of a test: the run's broker. */
export const cliEnv = () => ({ KAFKA_BROKERS: testBrokers().join(',') });

/**
 * A small `streamgrad run` experiment of the CLI tests: a 16-feature linear model on 2 shards, the simulator at
 * `ratePerSecond` over `partitions` partitions, the default server (the `retrain` staleness bound), short sessions;
 * `training` overrides.
 */
export function runExperiment(partitions: number, ratePerSecond: number, training: object = {}) {
  const id = randomUUID().slice(0, 8);
  return {
    namespace: `run-${id}`,
    inputTopic: `run-${id}.telemetry`,
    inputPartitions: partitions,
    model: { kind: 'linear', features: 16, shards: 2, optimizer: { kind: 'adam', learningRate: 0.03 } },
    ...training,
    simulator: { devices: 40, ratePerSecond, seed: 11, dropoutRate: 0.002 },
    metricsPort: 0,
    sessionTimeoutMs: 6_000,
  };
}
