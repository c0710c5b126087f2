import type { Command } from 'commander';
import { ConfigError } from '../../schemas/errors.js';
import { NamespaceError } from '../common/errors.js';
import { auditNamespace, formatAudit } from '../commands/audit.js';
import { topicsOf } from '../common/topics.js';
import { configOption, connectTo, example, experimentIn } from './options.js';

async function auditCommand(options: { config: string; namespace?: string; json?: boolean }): Promise<void> {
  const config = experimentIn(options.config, options.namespace);
  const { kafka, topics: existing } = await connectTo(config, 'audit');
  if (!existing.has(topicsOf(config.namespace).updates)) throw new NamespaceError(config.namespace, `${topicsOf(config.namespace).updates} does not exist`);
  if (!existing.has(config.inputTopic)) throw new ConfigError('inputTopic', `topic '${config.inputTopic}' does not exist on the broker`);
  const report = await auditNamespace({ kafka, namespace: config.namespace, inputTopic: config.inputTopic, log: (line) => console.error(`[audit] ${line}`) });
  console.log(options.json ? JSON.stringify(report) : formatAudit(report));
  process.exitCode = report.ok ? 0 : 1;
}

/** `streamgrad audit`. */
export function addAuditCommand(program: Command): void {
  program
    .command('audit')
    .description('prove from the committed topics that every input record up to the workers\' committed offsets was trained or dead-lettered exactly once (gaps and overlaps listed as offset runs, per partition and shard), and that every shard\'s versions strictly increase and its counters account for every update. Exit 0 only when all holds, 1 when not')
    .addOption(configOption())
    .option('--namespace <ns>', 'another namespace than the config\'s (a replay\'s, say)')
    .option('--json', 'print JSON')
    .addHelpText('after', example('  streamgrad audit --config examples/iot.yaml'))
    .action(auditCommand);
}
