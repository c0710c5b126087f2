import * as tf from '@tensorflow/tfjs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { selectBackend, tensorflowThreads } from '../../../pipeline/common/backend.js';
import { BackendError } from '../../../pipeline/common/errors.js';
import { ConfigError } from '../../../schemas/index.js';

describe('selectBackend', () => {
  afterEach(() => vi.unstubAllEnvs());

  it('picks the fastest backend that starts: tensorflow where tfjs-node loads, else wasm', async () => {
    const tfjsNode = await import('@tensorflow/tfjs-node' as string).then(
      () => true,
      () => false,
    );
    vi.stubEnv('STREAMGRAD_BACKEND', undefined);
    const chosen = await selectBackend({ backend: 'auto' });
    expect(chosen).toBe(tfjsNode ? 'tensorflow' : 'wasm');
    expect(tf.getBackend()).toBe(chosen);
  });

  it('lets STREAMGRAD_BACKEND choose when the configuration says auto (its default), not when it names a backend', async () => {
    vi.stubEnv('STREAMGRAD_BACKEND', 'cpu');
    expect(await selectBackend({ backend: 'auto' })).toBe('cpu');
    expect(await selectBackend()).toBe('cpu');
    expect(await selectBackend({ backend: 'wasm' })).toBe('wasm');
    vi.stubEnv('STREAMGRAD_BACKEND', 'gpu');
    await expect(selectBackend({ backend: 'auto' })).rejects.toThrow(/backend.*'gpu'/);
  });

  it('gives native TensorFlow one thread per process, or STREAMGRAD_TF_THREADS', () => {
    expect(tensorflowThreads({})).toBe(1);
    expect(tensorflowThreads({ STREAMGRAD_TF_THREADS: '2' })).toBe(2);
    expect(() => tensorflowThreads({ STREAMGRAD_TF_THREADS: 'two' })).toThrow(/STREAMGRAD_TF_THREADS.*'two'/);
    expect(() => tensorflowThreads({ STREAMGRAD_TF_THREADS: '0' })).toThrow(ConfigError);
  });

  it('uses a forced backend, and fails loudly when it cannot start', async () => {
    expect(await selectBackend({ backend: 'cpu' })).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    const tfjsNode = await import('@tensorflow/tfjs-node' as string).then(
      () => true,
      () => false,
    );
    if (tfjsNode) expect(await selectBackend({ backend: 'tensorflow' })).toBe('tensorflow');
    else await expect(selectBackend({ backend: 'tensorflow' })).rejects.toThrow(BackendError);
    await expect(selectBackend({ backend: 'gpu' as 'cpu' })).rejects.toThrow(ConfigError);
  });
});
