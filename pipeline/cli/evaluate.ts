import type { Command } from 'commander';
import { ConfigError } from '../../schemas/errors.js';
import { evaluateModel, formatEvaluation, reportEvaluation } from '../commands/evaluate.js';
import { selectBackend } from '../common/backend.js';
import { assertModelTopic, configOption, connectTo, example, experimentIn } from './options.js';

async function evaluateCommand(options: { config: string; topic: string; namespace?: string; json?: boolean }): Promise<void> {
  const config = experimentIn(options.config, options.namespace);
  const { kafka, topics } = await connectTo(config, 'evaluate');
  if (!topics.has(options.topic)) throw new ConfigError('--topic', `topic '${options.topic}' does not exist on the broker`);
  assertModelTopic(config, topics);
  await selectBackend({ backend: config.backend });
  const evaluation = await evaluateModel(kafka, config, options.topic, (line) => console.error(`[evaluate] ${line}`));
  console.log(options.json ? JSON.stringify(evaluation) : formatEvaluation(evaluation));
  // For `streamgrad dashboard`; the scores above stand whether or not it can be written.
  await reportEvaluation(kafka, evaluation).catch((error: Error) => console.error(`[evaluate] the scores were not written to ${config.namespace}.reports for dashboards: ${error.message}`));
}

/** `streamgrad evaluate`. */
export function addEvaluateCommand(program: Command): void {
  program
    .command('evaluate')
    .description('score the newest model of the namespace on a topic of labelled samples (a holdout): its loss, and MAE and RMSE for regression or accuracy and log-loss for a classifier')
    .addOption(configOption())
    .requiredOption('-t, --topic <topic>', 'the topic of TrainingSamples to score on, in the experiment\'s input framing')
    .option('--namespace <ns>', 'another namespace than the config\'s (a replay\'s, say)')
    .option('--json', 'print JSON')
    .addHelpText('after', example('  streamgrad evaluate --config examples/iot.yaml --topic iot.holdout'))
    .action(evaluateCommand);
}
