import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { selectBackend } from '../../../pipeline/common/backend.js';
import { BackendError } from '../../../pipeline/common/errors.js';
import { ConfigError } from '../../../schemas/index.js';

describe('selectBackend', () => {
  it('picks the fastest backend that starts: wasm here, where tfjs-node is not installed', async () => {
    const chosen = await selectBackend({ backend: 'auto' });
    expect(['tensorflow', 'wasm']).toContain(chosen);
    expect(tf.getBackend()).toBe(chosen);
  });

  it('uses a forced backend, and fails loudly when it cannot start', async () => {
    expect(await selectBackend({ backend: 'cpu' })).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    let tfjsNode = true;
    try {
      await import('@tensorflow/tfjs-node' as string);
    } catch {
      tfjsNode = false;
    }
    if (!tfjsNode) await expect(selectBackend({ backend: 'tensorflow' })).rejects.toThrow(BackendError);
    await expect(selectBackend({ backend: 'gpu' as 'cpu' })).rejects.toThrow(ConfigError);
  });
});
