/** What the commands share: option parsers whose errors name the option, help examples, the experiment file and its broker. */
import { InvalidArgumentError, Option } from 'commander';
import type { Kafka } from 'kafkajs';
import { loadExperiment, parseNamespace, type ExperimentConfig } from '../common/config.js';
import { NamespaceError } from '../common/errors.js';
import { assertReachable, createKafka } from '../common/kafkaClient.js';
import { topicsOf } from '../common/topics.js';

/** A positive (or non-negative) integer option; the error names the option. */
export const integer = (name: string, min = 1) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}, got '${value}'`);
  return n;
};
export const positive = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a number > 0, got '${value}'`);
  return n;
};

export const configOption = () => new Option('-c, --config <file>', 'experiment configuration, JSON or YAML (see examples/)').makeOptionMandatory();
export const metricsOption = () => new Option('--metrics-port <port>', 'serve Prometheus metrics at http://127.0.0.1:<port>/metrics (0: any free port; default: the config\'s metricsPort, else off)').argParser(integer('--metrics-port', 0));
export const example = (lines: string) => `\nExample:\n${lines}`;

/** The experiment of `file`, in another namespace when `namespace` is given (a replay's, say). */
export function experimentIn(file: string, namespace: string | undefined): ExperimentConfig {
  const config = loadExperiment(file);
  return namespace === undefined ? config : { ...config, namespace: parseNamespace(namespace, '--namespace') };
}

/** A client for the experiment's brokers (checked reachable first) and the names of the topics they hold. */
export async function connectTo(config: ExperimentConfig, command: string): Promise<{ readonly kafka: Kafka; readonly topics: ReadonlySet<string> }> {
  await assertReachable(config);
  const kafka = createKafka(config, `streamgrad-${command}-${process.pid}`);
  const admin = kafka.admin();
  await admin.connect();
  const topics = new Set(await admin.listTopics().finally(() => admin.disconnect()));
  return { kafka, topics };
}

/** Fails with the namespace named unless its model topic is among `topics`. */
export function assertModelTopic(config: ExperimentConfig, topics: ReadonlySet<string>): void {
  const model = topicsOf(config.namespace).model;
  if (!topics.has(model)) throw new NamespaceError(config.namespace, `no topic ${model} on the broker`);
}
