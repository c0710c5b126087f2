import type { Command } from 'commander';
import { ConfigError } from '../../schemas/errors.js';
import { NamespaceError } from '../common/errors.js';
import { loadExperiment } from '../common/config.js';
import { assertReachable, createKafka } from '../common/kafkaClient.js';
import { findRun } from '../commands/runProcesses.js';
import { growInputTopic } from '../common/topics.js';
import { integer, configOption, example } from './options.js';

async function scaleCommand(options: { config: string; partitions?: number; workers?: number }): Promise<void> {
  if (options.partitions === undefined && options.workers === undefined) throw new ConfigError('--partitions', 'give --partitions N, --workers K, or both');
  const config = loadExperiment(options.config);
  await assertReachable(config);
  if (options.partitions !== undefined) {
    const kafka = createKafka(config, `streamgrad-scale-${process.pid}`);
    const before = await growInputTopic(kafka, config.inputTopic, options.partitions);
    console.error(before === options.partitions ? `${config.inputTopic} already has ${before} partitions` : `${config.inputTopic}: ${before} → ${options.partitions} partitions; the workers take the new ones within seconds`);
  }
  if (options.workers !== undefined) {
    const run = findRun(config.namespace);
    if (!run) throw new NamespaceError(config.namespace, 'no `streamgrad run` of it on this machine to add workers to; start one, or start workers with `streamgrad worker --config`');
    const response = await fetch(`${run.control}/workers?add=${options.workers}`, { method: 'POST' });
    const body = (await response.json()) as { added?: string[]; workers?: number; error?: string };
    if (!response.ok) throw new Error(`streamgrad run (pid ${run.pid}) refused: ${body.error}`);
    console.error(`added ${body.added?.join(', ')} to the run (pid ${run.pid}); it now has ${body.workers} workers`);
  }
}

/** `streamgrad scale`. */
export function addScaleCommand(program: Command): void {
  program
    .command('scale')
    .description('grow the input topic to N partitions while training runs, and add K worker processes to the running `streamgrad run`; the workers rebalance with nothing lost')
    .addOption(configOption())
    .option('--partitions <n>', 'the input topic\'s new partition count (Kafka only adds partitions)', integer('--partitions'))
    .option('--workers <k>', 'worker processes to add to the run of this namespace on this machine', integer('--workers'))
    .addHelpText('after', example('  streamgrad scale --config examples/iot.yaml --partitions 8 --workers 2'))
    .action(scaleCommand);
}
