import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../../schemas/errors.js';
import { BackendError } from './errors.js';
import { tensorflowBackend, useLeanTensorflowKernels } from './tensorflowKernels.js';

/** The compute backends, fastest first: native TensorFlow, WebAssembly, pure JavaScript. */
export const backendNames = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof backendNames)[number];

/**
 * Threads for native TensorFlow's kernels in a process: STREAMGRAD_TF_THREADS when set, else one. streamgrad gets
 * its parallelism from processes (a worker per group of partitions, the server's shards), and one intra-op thread per
 * process was the fastest measured on 2 cores even for a process alone: isolated steps at batch 256, 16-64-64-1
 * MLP 115–135k samples/s with one thread against 59–86k with two; 64-256-256-10 softmax 45–49k against 32k; at batch
 * 1,024, 290k against 160k and 83k against 51k. A big model on many cores may want more: set STREAMGRAD_TF_THREADS.
 */
export function tensorflowThreads(env: NodeJS.ProcessEnv = process.env): number {
  const forced = env.STREAMGRAD_TF_THREADS;
  if (forced === undefined) return 1;
  const threads = Number(forced);
  if (!Number.isInteger(threads) || threads < 1) throw new ConfigError('STREAMGRAD_TF_THREADS', `must be a whole number ≥ 1; got '${forced}'`);
  return threads;
}

async function register(name: BackendName): Promise<void> {
  // The packages register their backend when imported. TensorFlow reads its thread counts from the environment
  // when tfjs-node creates its context, at import; its informational log lines are off unless asked for.
  if (name === 'tensorflow') {
    const threads = String(tensorflowThreads());
    process.env.TF_NUM_INTRAOP_THREADS ??= threads;
    process.env.TF_NUM_INTEROP_THREADS ??= threads;
    process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
    await import('@tensorflow/tfjs-node' as string);
  }
  if (name === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
}

async function tryBackend(name: BackendName): Promise<void> {
  try {
    await register(name);
  } catch (cause) {
    throw new BackendError(name, name === 'tensorflow' ? `@tensorflow/tfjs-node does not load (${(cause as Error).message.split('\n')[0]}); run 'npm run setup:tensorflow'` : (cause as Error).message, cause);
  }
  // setBackend resolves false (and tfjs quietly keeps another backend) when initialisation fails.
  const ok = await tf.setBackend(name);
  await tf.ready();
  if (!ok || tf.getBackend() !== name) throw new BackendError(name, `tf.setBackend('${name}') failed; tfjs is on '${tf.getBackend()}'`);
  if (name === 'tensorflow') {
    await useLeanTensorflowKernels();
    warnUnlessSignalSafe();
  }
}

let warnedSignals = false;

/**
 * libtensorflow 2.9's oneDNN GEMM kernels point the stack pointer into the heap while they run (oneDNN issue 4845):
 * a signal handled meanwhile on that thread (a worker's SIGTERM or SIGINT, a profiler's SIGPROF) corrupts the heap,
 * and the process aborts later with `free(): invalid pointer` or worse. The addon `infra/tensorflow/setup` builds
 * (patches/@tensorflow+tfjs-node+4.22.0.patch) holds signals while TensorFlow runs; any other one gets a warning.
 */
function warnUnlessSignalSafe(): void {
  if (warnedSignals || tensorflowBackend()?.binding.STREAMGRAD_SIGNALS_HELD === 1) return;
  warnedSignals = true;
  process.emitWarning("this @tensorflow/tfjs-node addon runs TensorFlow's GEMM kernels with signals unheld, and a signal that arrives during one (SIGTERM, SIGINT, a profiler's) can corrupt the heap; run 'npm run setup:tensorflow' to build the patched addon", { code: 'STREAMGRAD_TFJS_NODE_SIGNALS' });
}

/**
 * Chooses the TensorFlow.js backend: `backend` when it names one, else the
 * STREAMGRAD_BACKEND environment variable when set (so `auto`, the
 * configuration's default, defers to it), and it must work; otherwise the first of
 * tensorflow (where @tensorflow/tfjs-node is installed), wasm and cpu that
 * starts. Returns the name of the backend in use. Native TensorFlow runs
 * `tensorflowThreads()` threads.
 *
 * @example
 * const backend = await selectBackend();            // 'wasm' on a machine without tfjs-node
 * const forced = await selectBackend({ backend: 'cpu' });
 */
export async function selectBackend(options: { backend?: BackendName | 'auto' } = {}): Promise<BackendName> {
  const named = options.backend === 'auto' ? undefined : options.backend;
  const wanted = named ?? (process.env.STREAMGRAD_BACKEND as BackendName | 'auto' | undefined) ?? 'auto';
  if (wanted !== 'auto') {
    if (!backendNames.includes(wanted)) {
      throw new ConfigError('backend', `must be one of auto, ${backendNames.join(', ')}; got '${String(wanted)}'`);
    }
    await tryBackend(wanted);
    return wanted;
  }
  const failures: string[] = [];
  for (const name of backendNames) {
    try {
      await tryBackend(name);
      return name;
    } catch (error) {
      failures.push((error as Error).message);
    }
  }
  throw new BackendError('auto', `none of ${backendNames.join(', ')} could start:\n${failures.join('\n')}`);
}
