import * as tf from '@tensorflow/tfjs';

/**
 * Leaner versions of two `@tensorflow/tfjs-node` kernels that every dense model's step runs.
 *
 * tfjs-node builds them out of many TensorFlow ops, and at the sizes streamgrad trains (batches of 256, layers of
 * tens to hundreds of units) each op's fixed cost outweighs its arithmetic:
 * - `Step` (ReLU's gradient: 1 where x > 0, else 0, NaN for NaN) runs IsNan, Greater, Fill, Select and Select over
 *   two uploaded constants; here it is Sign(Relu(x)), the same values in two ops;
 * - `_FusedMatMul` (a dense layer's product, bias and activation) runs tfjs' matMul, which wraps BatchMatMulV2 in
 *   three Reshapes that do nothing to the 3-D inputs it is given; here it calls BatchMatMulV2 itself.
 *
 * Measured on 2 cores (isolated steps of a replica at batch 256, one thread, medians of 5 alternating runs of 7):
 * the 16-64-64-1 MLP 84k → 111k samples/s, the 64-256-256-10 softmax 34k → 43k. The other cases (a Step with a
 * leaky slope, other dtypes, PReLU) go to tfjs-node's own kernels.
 * `test/pipeline/common/tensorflowKernels.test.ts` checks the values against tfjs-node's, and that a replica's
 * gradients are the same bit for bit.
 */

/** The part of tfjs-node's backend that the kernels call. */
interface NodeBackend {
  executeSingleOutput(name: string, attributes: readonly OpAttribute[], inputs: readonly tf.TensorInfo[]): tf.Tensor;
  applyActivation(x: tf.Tensor, activation: string, preluActivationWeights?: tf.Tensor, leakyreluAlpha?: number): tf.Tensor;
  readonly binding: { readonly TF_ATTR_BOOL: number };
}

interface OpAttribute {
  readonly name: string;
  readonly type: number;
  readonly value: unknown;
}

interface KernelBackendModule {
  createTensorsTypeOpAttr(name: string, dtype: tf.DataType): OpAttribute;
}

interface FusedMatMulAttributes {
  readonly transposeA: boolean;
  readonly transposeB: boolean;
  readonly activation?: string;
  readonly leakyreluAlpha?: number;
}

let restoreRegistered: (() => void) | undefined;

/**
 * Replaces tfjs-node's `Step` and `_FusedMatMul` kernels with the lean ones (once; the tensorflow backend must be
 * registered). Returns a function that puts tfjs-node's own back (for tests).
 */
export async function useLeanTensorflowKernels(): Promise<() => void> {
  if (restoreRegistered) return restoreRegistered;
  const { createTensorsTypeOpAttr } = (await import('@tensorflow/tfjs-node/dist/nodejs_kernel_backend.js' as string)) as KernelBackendModule;
  const originals = (['Step', '_FusedMatMul'] as const).map((name) => {
    const kernel = tf.getKernel(name, 'tensorflow');
    if (!kernel) throw new Error(`tfjs-node has no '${name}' kernel to replace: is the tensorflow backend registered?`);
    return kernel;
  });
  const [step, fusedMatMul] = originals as [tf.KernelConfig, tf.KernelConfig];
  const type = (dtype: tf.DataType) => createTensorsTypeOpAttr('T', dtype);
  const replace = (config: tf.KernelConfig) => {
    tf.unregisterKernel(config.kernelName, 'tensorflow');
    tf.registerKernel(config);
  };

  replace({
    kernelName: 'Step',
    backendName: 'tensorflow',
    kernelFunc: (args) => {
      const { x } = args.inputs as { x: tf.TensorInfo };
      const { alpha } = args.attrs as { alpha?: number };
      if ((alpha ?? 0) !== 0 || x.dtype !== 'float32') return step.kernelFunc(args);
      const backend = args.backend as unknown as NodeBackend;
      const positive = backend.executeSingleOutput('Relu', [type(x.dtype)], [x]);
      const result = backend.executeSingleOutput('Sign', [type(x.dtype)], [positive]);
      positive.dispose();
      return result;
    },
  });

  replace({
    kernelName: '_FusedMatMul',
    backendName: 'tensorflow',
    kernelFunc: (args) => {
      const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
      const { transposeA, transposeB, activation, leakyreluAlpha } = args.attrs as unknown as FusedMatMulAttributes;
      if (!a || !b || preluActivationWeights || a.dtype !== 'float32' || b.dtype !== 'float32') return fusedMatMul.kernelFunc(args);
      const backend = args.backend as unknown as NodeBackend;
      const flag = (name: string, value: boolean) => ({ name, type: backend.binding.TF_ATTR_BOOL, value });
      let result = backend.executeSingleOutput('BatchMatMulV2', [type('float32'), flag('adj_x', transposeA), flag('adj_y', transposeB)], [a, b]);
      if (bias) {
        const product = result;
        result = backend.executeSingleOutput('AddV2', [type('float32')], [product, bias]);
        product.dispose();
      }
      if (!activation || activation === 'linear') return result;
      const linear = result;
      result = activation === 'relu' ? backend.executeSingleOutput('Relu', [type('float32')], [linear]) : backend.applyActivation(linear, activation, undefined, leakyreluAlpha);
      linear.dispose();
      return result;
    },
  });

  restoreRegistered = () => {
    originals.forEach(replace);
    restoreRegistered = undefined;
  };
  return restoreRegistered;
}
