import type { Command } from 'commander';
import { ConfigError } from '../../schemas/errors.js';
import { loadExperiment, parseNamespace } from '../common/config.js';
import { ConsoleDisplay, formatCount as count } from '../common/console.js';
import { parseOffsets, parseTime, runReplay, type ReplayRange } from '../commands/replay.js';
import { configOption, example } from './options.js';

interface ReplayCommandOptions {
  config: string;
  namespace?: string;
  from?: string;
  to?: string;
  fromOffsets?: string;
  toOffsets?: string;
  sync?: boolean;
  interleave?: boolean;
  json?: boolean;
}

async function replayCommand(options: ReplayCommandOptions): Promise<void> {
  if (options.from && options.fromOffsets) throw new ConfigError('--from', 'give --from (a time) or --from-offsets, not both');
  if (options.to && options.toOffsets) throw new ConfigError('--to', 'give --to (a time) or --to-offsets, not both');
  const range: ReplayRange = {
    ...(options.from ? { from: { timestamp: parseTime(options.from, '--from') } } : options.fromOffsets ? { from: { offsets: parseOffsets(options.fromOffsets, '--from-offsets') } } : {}),
    ...(options.to ? { to: { timestamp: parseTime(options.to, '--to') } } : options.toOffsets ? { to: { offsets: parseOffsets(options.toOffsets, '--to-offsets') } } : {}),
  };
  if (range.from && range.to && 'timestamp' in range.from && 'timestamp' in range.to && range.from.timestamp >= range.to.timestamp) {
    throw new ConfigError('--from', `${new Date(range.from.timestamp).toISOString()} is not before --to ${new Date(range.to.timestamp).toISOString()}: the range is empty`);
  }
  if (range.from && range.to && 'offsets' in range.from && 'offsets' in range.to) {
    const to = range.to.offsets;
    for (const [partition, offset] of Object.entries(range.from.offsets)) {
      const end = to[Number(partition)];
      if (end !== undefined && offset > end) throw new ConfigError('--from-offsets', `partition ${partition}: ${offset} is after --to-offsets ${end}`);
    }
  }
  const config = loadExperiment(options.config);
  const namespace = options.namespace === undefined ? undefined : parseNamespace(options.namespace, '--namespace');
  const summary = await runReplay({ config, namespace, range, sync: options.sync ?? false, interleave: options.interleave ?? false, display: new ConsoleDisplay('[replay]') });
  if (options.json) {
    console.log(JSON.stringify(summary));
    return;
  }
  console.log(
    [
      `namespace   ${summary.namespace}`,
      `samples     ${count(summary.samples)} (${count(summary.deadLettered)} dead-lettered)`,
      `final loss  ${summary.finalLoss === undefined ? '-' : summary.finalLoss.toFixed(6)}`,
      `version     ${summary.versions.join('/')}`,
      `model hash  ${summary.hash}`,
      `took        ${summary.seconds.toFixed(1)} s`,
    ].join('\n'),
  );
}

/** `streamgrad replay`. */
export function addReplayCommand(program: Command): void {
  program
    .command('replay')
    .description('train a new experiment namespace on a range of the input topic\'s history (by time or offsets), with the config\'s own model and optimizer; ends by itself and prints samples, final loss, model version and model hash. The live namespace is never touched')
    .addOption(configOption())
    .option('--namespace <ns>', 'the new namespace (default: <config namespace>.replay-<time>); it must not exist')
    .option('--from <time>', 'first record at or after this time: ISO 8601 or ms since the epoch (default: the beginning)')
    .option('--to <time>', 'stop before the first record at or after this time (default: the end as of the start)')
    .option('--from-offsets <p:o,…>', 'start offsets per partition, e.g. 0:1000,1:1000 (others: the beginning)')
    .option('--to-offsets <p:o,…>', 'end offsets (exclusive) per partition (others: the end)')
    .option('--sync', 'one update at a time, each waiting for its snapshot: two replays of a range give identical model hashes')
    .option('--interleave', 'read the partitions all at once, as live training does, not one after another (with --sync: a sequential learner on that order, which depends on timing)')
    .option('--json', 'print the summary as JSON')
    .addHelpText('after', example('  streamgrad replay --config experiments/lr-0.01.yaml --from 2026-11-28T08:00:00Z --to 2026-11-28T09:00:00Z --sync'))
    .action(replayCommand);
}
