import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../../schemas/errors.js';
import { BackendError } from './errors.js';

/** The compute backends, fastest first: native TensorFlow, WebAssembly, pure JavaScript. */
export const backendNames = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof backendNames)[number];

async function register(name: BackendName): Promise<void> {
  // The packages register their backend when imported; tfjs-node is an optional peer dependency.
  if (name === 'tensorflow') await import('@tensorflow/tfjs-node' as string);
  if (name === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
}

async function tryBackend(name: BackendName): Promise<void> {
  try {
    await register(name);
  } catch (cause) {
    throw new BackendError(name, name === 'tensorflow' ? '@tensorflow/tfjs-node is not installed (npm install @tensorflow/tfjs-node)' : (cause as Error).message, cause);
  }
  // setBackend resolves false (and tfjs quietly keeps another backend) when initialisation fails.
  const ok = await tf.setBackend(name);
  await tf.ready();
  if (!ok || tf.getBackend() !== name) throw new BackendError(name, `tf.setBackend('${name}') failed; tfjs is on '${tf.getBackend()}'`);
}

/**
 * Chooses the TensorFlow.js backend: `backend` (or the STREAMGRAD_BACKEND
 * environment variable) when given, and it must work; otherwise the first of
 * tensorflow (where @tensorflow/tfjs-node is installed), wasm and cpu that
 * starts. Returns the name of the backend in use.
 *
 * @example
 * const backend = await selectBackend();            // 'wasm' on a machine without tfjs-node
 * const forced = await selectBackend({ backend: 'cpu' });
 */
export async function selectBackend(options: { backend?: BackendName | 'auto' } = {}): Promise<BackendName> {
  const wanted = options.backend ?? (process.env.STREAMGRAD_BACKEND as BackendName | 'auto' | undefined) ?? 'auto';
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
