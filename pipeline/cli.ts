#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { packageInfo } from './packageInfo.js';

/** The `streamgrad` command line. Sub-commands register here as they land. */
export function buildCli(): Command {
  const { version } = packageInfo();
  return new Command('streamgrad')
    .description('Continuous training from Kafka: exactly-once gradient steps, versioned model snapshots.')
    .version(version)
    .showHelpAfterError()
    .addHelpText('after', '\nExample:\n  streamgrad --version');
}

const invokedDirectly = process.argv[1] !== undefined
  && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
if (invokedDirectly) {
  await buildCli().parseAsync(process.argv);
}
