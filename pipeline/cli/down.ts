import type { Command } from 'commander';
import { brokersFromEnv, stopLocalBroker } from '../commands/localBroker.js';
import { example } from './options.js';

async function downCommand(options: { clean?: boolean }): Promise<void> {
  if (brokersFromEnv()) {
    console.error('KAFKA_BROKERS is set: that broker is not ours to stop');
    return;
  }
  await stopLocalBroker(options.clean);
  console.error(options.clean ? 'the local broker is stopped and its data deleted' : 'the local broker is stopped (its topics are kept)');
}

/** `streamgrad down`. */
export function addDownCommand(program: Command): void {
  program
    .command('down')
    .description('stop the local Kafka broker (its topics are kept unless --clean)')
    .option('--clean', 'delete its data too')
    .addHelpText('after', example('  streamgrad down --clean'))
    .action(downCommand);
}
