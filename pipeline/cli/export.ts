import { type Command, Option } from 'commander';
import { accessSync, constants, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../schemas/errors.js';
import { NamespaceError } from '../common/errors.js';
import { formatCount as count } from '../common/console.js';
import { exportModel, type Quantization } from '../commands/export.js';
import { latestSnapshots } from '../common/modelStore.js';
import { selectBackend } from '../common/backend.js';
import { assertModelTopic, configOption, connectTo, example, experimentIn } from './options.js';

/** Makes `dir` (and its parents) and checks it takes files, before any work is done for it. */
function assertWritableDirectory(dir: string, option: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
    const probe = join(dir, `.streamgrad-write-test-${process.pid}`);
    writeFileSync(probe, '');
    rmSync(probe);
  } catch (error) {
    throw new ConfigError(option, `cannot write to ${dir}: ${(error as Error).message}`);
  }
}

async function exportCommand(options: { config: string; namespace?: string; out: string; quantize?: Quantization }): Promise<void> {
  const config = experimentIn(options.config, options.namespace);
  assertWritableDirectory(options.out, '--out');
  const { kafka, topics } = await connectTo(config, 'export');
  assertModelTopic(config, topics);
  const snapshots = await latestSnapshots(kafka, config.namespace);
  if (snapshots.size < config.model.shards) throw new NamespaceError(config.namespace, `${config.namespace}.model has snapshots of ${snapshots.size} of ${config.model.shards} shards; train longer first`);
  await selectBackend({ backend: config.backend });
  const result = await exportModel(config.model, snapshots, options.out, options.quantize);
  console.error(`exported snapshot versions ${result.versions.join('/')} of ${config.namespace} (${count(result.weightBytes)} bytes of ${options.quantize ?? 'float32'} weights)`);
  console.log(result.modelJson);
}

/** `streamgrad export`. */
export function addExportCommand(program: Command): void {
  program
    .command('export')
    .description('write the current model from <namespace>.model as a TensorFlow.js LayersModel directory (model.json + weights.bin), optionally with quantized weights; prints the model.json path')
    .addOption(configOption())
    .requiredOption('-o, --out <dir>', 'output directory')
    .option('--namespace <ns>', 'another namespace than the config\'s (a replay\'s, say)')
    .addOption(new Option('--quantize <dtype>', 'quantized weights for edge devices (uint8: 1/4 of the size, error ≤ (max−min)/510 per tensor; float16: 1/2, relative error ≤ 2^-11)').choices(['uint8', 'float16']))
    .addHelpText('after', example('  streamgrad export --config examples/iot.yaml --out model/ --quantize uint8\n  # then, in any TF.js program: await tf.loadLayersModel(\'file://model/model.json\')'))
    .action(exportCommand);
}
