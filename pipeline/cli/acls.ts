import { Option, type Command } from 'commander';
import { ConfigError } from '../../schemas/errors.js';
import { aclEntries, roleGrants, roles, type Role, type RoleGrant } from '../common/acls.js';
import { assertReachable, createKafka } from '../common/kafkaClient.js';
import { ensureExperimentTopics } from '../common/topics.js';
import { configOption, example, experimentIn } from './options.js';

/** The grants as a table: one line per resource pattern. */
export function formatGrants(grants: readonly RoleGrant[], principal: string): string {
  const rows = grants.map((grant) => [grant.resource, grant.pattern, grant.name, grant.operations.join(','), grant.why]);
  const header = ['resource', 'pattern', 'name', 'operations', 'for'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: readonly string[]) => cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ');
  return [`allow ${principal} from any host:`, line(header), ...rows.map(line)].join('\n');
}

async function aclsCommand(options: { config: string; role: Role; principal: string; namespace?: string; apply?: boolean }): Promise<void> {
  if (!/^User:[^\s]+$/.test(options.principal)) throw new ConfigError('--principal', `'${options.principal}' is not a Kafka principal; give User:<name> (a SASL username, or a certificate's distinguished name)`);
  const config = experimentIn(options.config, options.namespace);
  const grants = roleGrants(options.role, config);
  console.log(formatGrants(grants, options.principal));
  if (!options.apply) return;
  await assertReachable(config);
  const kafka = createKafka(config, `streamgrad-acls-${process.pid}`);
  // Roles other than admin may not create topics: the experiment's topics exist before they start.
  await ensureExperimentTopics(kafka, config);
  const admin = kafka.admin();
  await admin.connect();
  try {
    const entries = aclEntries(grants, options.principal);
    await admin.createAcls({ acl: entries });
    console.error(`granted ${entries.length} ACLs to ${options.principal} (role ${options.role}, namespace ${config.namespace}); created the experiment's topics where missing`);
  } finally {
    await admin.disconnect();
  }
}

/** `streamgrad acls`. */
export function addAclsCommand(program: Command): void {
  program
    .command('acls')
    .description('print (and with --apply, grant) the Kafka ACLs that a role of this experiment needs: worker, server, reader, producer or admin')
    .addOption(configOption())
    .addOption(new Option('--role <role>', 'what the principal runs').choices([...roles]).makeOptionMandatory())
    .requiredOption('--principal <User:name>', 'who gets the ACLs: User:<SASL username> (or User:<certificate DN> with mutual TLS)')
    .option('--namespace <ns>', 'another namespace than the config\'s (a replay\'s, say)')
    .option('--apply', 'create the experiment\'s topics where missing and grant the ACLs, connecting as the config\'s user (an admin)')
    .addHelpText('after', example('  streamgrad acls --config admin.yaml --role worker --principal User:worker --apply'))
    .action(aclsCommand);
}
