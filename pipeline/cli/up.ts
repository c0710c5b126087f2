import type { Command } from 'commander';
import { brokersFromEnv, startLocalBroker } from '../commands/localBroker.js';
import { example } from './options.js';

async function upCommand(): Promise<void> {
  const fromEnv = brokersFromEnv();
  if (fromEnv) {
    console.error(`KAFKA_BROKERS is set (${fromEnv.join(',')}): using that broker, nothing to start`);
    console.log(fromEnv.join(','));
    return;
  }
  const { brokers, alreadyRunning } = await startLocalBroker();
  console.error(alreadyRunning ? 'the local broker is already running' : 'the local broker is up (stop it with `streamgrad down`)');
  console.log(brokers.join(','));
}

/** `streamgrad up`. */
export function addUpCommand(program: Command): void {
  program
    .command('up')
    .description('start the local Kafka broker from infra/kafka (KRaft on 127.0.0.1:19092); prints the bootstrap address. Nothing to do when KAFKA_BROKERS is set')
    .addHelpText('after', example('  export KAFKA_BROKERS=$(streamgrad up)'))
    .action(upCommand);
}
