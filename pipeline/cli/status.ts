import type { Command } from 'commander';
import { assertReachable, createKafka } from '../common/kafkaClient.js';
import { formatStatus, StatusReader } from '../commands/status.js';
import { positive, configOption, example, experimentIn } from './options.js';

async function statusCommand(options: { config: string; namespace?: string; watch?: boolean; interval: number; json?: boolean }): Promise<void> {
  const config = experimentIn(options.config, options.namespace);
  await assertReachable(config);
  const reader = new StatusReader(createKafka(config, `streamgrad-status-${process.pid}`), config);
  await reader.start();
  try {
    await reader.catchUp();
    const show = (report: Awaited<ReturnType<StatusReader['read']>>) => console.log(options.json ? JSON.stringify(report) : formatStatus(report));
    if (!options.watch) {
      // Two readings a second apart, for rates.
      await reader.read();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      show(await reader.read());
      return;
    }
    let stopped = false;
    const stop = () => (stopped = true);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    while (!stopped) {
      const report = await reader.read();
      if (process.stdout.isTTY && !options.json) process.stdout.write('\x1b[2J\x1b[H');
      show(report);
      for (let waited = 0; waited < options.interval * 1_000 && !stopped; waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await reader.stop();
  }
}

/** `streamgrad status`. */
export function addStatusCommand(program: Command): void {
  program
    .command('status')
    .description('per partition: lag, rate and owning worker; per shard: version, samples applied, dropped stale updates, freshness, staleness; loss, dead letters and the prequential scores of the closed event-time windows. Reads Kafka only, so it works from any machine')
    .addOption(configOption())
    .option('--namespace <ns>', 'another namespace than the config\'s (a replay\'s, say)')
    .option('--watch', 'refresh until Ctrl-C')
    .option('--interval <seconds>', 'refresh interval with --watch', positive('--interval'), 2)
    .option('--json', 'print JSON')
    .addHelpText('after', example('  streamgrad status --config examples/iot.yaml --watch'))
    .action(statusCommand);
}
