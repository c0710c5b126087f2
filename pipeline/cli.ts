#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { StreamgradError } from '../schemas/errors.js';
import { exitCodeOf } from './common/errors.js';
import { explainFailure } from './common/kafkaClient.js';
import { logSettings, loggingJson, rootLogger } from './common/log.js';
import { packageInfo } from './common/packageInfo.js';
import { addDemoCommand } from './cli/demo.js';
import { addUpCommand } from './cli/up.js';
import { addDownCommand } from './cli/down.js';
import { addSimulateCommand } from './cli/simulate.js';
import { addIngestCommand } from './cli/ingest.js';
import { addRunCommand } from './cli/run.js';
import { addReplayCommand } from './cli/replay.js';
import { addScaleCommand } from './cli/scale.js';
import { addStatusCommand } from './cli/status.js';
import { addDashboardCommand } from './cli/dashboard.js';
import { addAclsCommand } from './cli/acls.js';
import { addAuditCommand } from './cli/audit.js';
import { addEvaluateCommand } from './cli/evaluate.js';
import { addExportCommand } from './cli/export.js';
import { addWorkerCommand } from './cli/worker.js';
import { addPsCommand } from './cli/ps.js';
import { example } from './cli/options.js';

/** The `streamgrad` command line. */
export function buildCli(): Command {
  const { version } = packageInfo();
  const program = new Command('streamgrad')
    .description('Continuous training from Kafka: exactly-once gradient steps, versioned model snapshots.')
    .version(version)
    // Set before the sub-commands, which inherit it: errors come back to the caller, who picks the exit code.
    .exitOverride()
    .showHelpAfterError()
    .addHelpText('after', example('  streamgrad up\n  streamgrad run --config examples/iot.yaml --workers 2 --simulate\n  streamgrad status --config examples/iot.yaml'));
  addDemoCommand(program);
  addUpCommand(program);
  addDownCommand(program);
  addSimulateCommand(program);
  addIngestCommand(program);
  addRunCommand(program);
  addReplayCommand(program);
  addScaleCommand(program);
  addStatusCommand(program);
  addDashboardCommand(program);
  addAuditCommand(program);
  addEvaluateCommand(program);
  addExportCommand(program);
  addWorkerCommand(program);
  addPsCommand(program);
  addAclsCommand(program);
  return program;
}

const invokedDirectly = process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
if (invokedDirectly) {
  try {
    // A bad STREAMGRAD_LOG_FORMAT or STREAMGRAD_LOG_LEVEL is named before anything runs.
    logSettings();
    await buildCli().parseAsync(process.argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // commander has printed the message (or the help or version).
      process.exitCode = error.exitCode === 0 ? 0 : 2;
    } else {
      const shown = explainFailure(error);
      if (loggingJson()) rootLogger().error({ code: shown instanceof StreamgradError ? shown.code : undefined, err: shown instanceof StreamgradError ? undefined : shown }, (shown as Error)?.message ?? String(shown));
      else console.error(shown instanceof StreamgradError ? `streamgrad: ${shown.message}` : shown);
      // A failed command may still hold Kafka connections or child processes: end it here.
      process.exit(exitCodeOf(shown));
    }
  }
}
