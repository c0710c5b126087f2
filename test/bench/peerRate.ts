/**
 * The Python peer (issue 15): the loop a Python user would write instead of streamgrad — confluent-kafka, fastavro
 * and Keras `train_on_batch` on TensorFlow CPU (`peer/keras_loop.py`) — on the same topic, model, batch and optimizer,
 * measured in the same bench run. Its virtual environment (`peer/requirements.txt`, about 1.4 GB) is made once, in
 * STREAMGRAD_CACHE_DIR (default ~/.cache/streamgrad), from PyPI.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { TrainingSample } from '../../schemas/index.js';

const run = promisify(execFile);
const peerDir = fileURLToPath(new URL('./peer/', import.meta.url));

export interface PeerResult {
  /** Samples/s between 10% and 90% of the topic, as the bench measures streamgrad. */
  readonly rate: number;
  readonly rateFromStart: number;
  /** Mean squared error of its final model on the holdout. */
  readonly holdoutLoss: number;
  readonly tensorflow: string;
  readonly intraOpThreads: number;
}

/** The peer's Python, in a virtual environment made once per requirements file. */
async function peerPython(log: (line: string) => void): Promise<string> {
  const requirements = join(peerDir, 'requirements.txt');
  const key = createHash('sha256').update(readFileSync(requirements)).digest('hex').slice(0, 12);
  const cacheRoot = process.env.STREAMGRAD_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'streamgrad');
  const venv = join(cacheRoot, `bench-peer-${key}`);
  const python = join(venv, 'bin', 'python');
  if (existsSync(join(venv, '.complete'))) return python;
  log(`peer: making its Python environment in ${venv} (tensorflow-cpu, confluent-kafka, fastavro from PyPI; once) …`);
  mkdirSync(cacheRoot, { recursive: true });
  await run('python3', ['-m', 'venv', '--clear', venv]);
  await run(python, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', requirements], { maxBuffer: 16 << 20 });
  writeFileSync(join(venv, '.complete'), '');
  return python;
}

/** Runs the peer over `topic` (its first `total` records) with `model` (see keras_loop.py) and scores it on `holdout`. */
export async function measurePeerRate(
  brokers: readonly string[],
  topic: string,
  total: number,
  holdout: readonly TrainingSample[],
  log: (line: string) => void,
  model: 'mlp16' | 'softmax64' = 'mlp16',
): Promise<PeerResult> {
  const python = await peerPython(log);
  const holdoutFile = join(mkdtempSync(join(tmpdir(), 'streamgrad-peer-')), 'holdout.json');
  writeFileSync(holdoutFile, JSON.stringify({ features: holdout.map((s) => s.features), labels: holdout.map((s) => s.label ?? 0) }));
  const { stdout } = await run(python, [join(peerDir, 'keras_loop.py'), '--brokers', brokers.join(','), '--topic', topic, '--total', String(total), '--holdout', holdoutFile, '--model', model], {
    maxBuffer: 16 << 20,
    timeout: 30 * 60_000,
  });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as PeerResult;
}
