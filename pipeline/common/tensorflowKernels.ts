import * as tf from '@tensorflow/tfjs';

/**
 * Leaner versions of four `@tensorflow/tfjs-node` kernels that every dense model's step runs.
 *
 * tfjs-node builds some kernels out of many TensorFlow ops, and at the sizes streamgrad trains (batches of 256,
 * layers of tens to hundreds of units) each op's fixed cost outweighs its arithmetic:
 * - `Step` (ReLU's gradient: 1 where x > 0, else 0, NaN for NaN) runs IsNan, Greater, Fill, Select and Select over
 *   uploaded constants; here it is Sign(Relu(x)), the same values in two ops;
 * - `_FusedMatMul` (a dense layer's product, bias and activation) runs tfjs' matMul, which wraps BatchMatMulV2 in
 *   three Reshapes that do nothing to the 3-D inputs it is given; here it calls BatchMatMulV2 itself;
 * - `Cast` to the dtype a tensor already has, and `Reshape` to the shape it already has, run a TensorFlow op that
 *   copies it; here they hand on the same data, as tfjs' own CPU backend does.
 *
 * One step of the 16-64-64-1 MLP: 56 TensorFlow ops and 40 uploads with tfjs-node's kernels, 41 and 27 with these.
 * Measured on 2 cores (isolated steps of a replica at batch 256, one thread, medians of 5 alternating runs of 7),
 * with the first two: the MLP 84k → 111k samples/s, the 64-256-256-10 softmax 34k → 43k; the pass-throughs added
 * nothing that the noise of this machine lets one see. The other cases (a Step with a leaky slope, other dtypes,
 * PReLU, a real cast or reshape) go to tfjs-node's own kernels. `test/pipeline/common/tensorflowKernels.test.ts`
 * checks the values against tfjs-node's, and that a replica's gradients and weights are the same bit for bit.
 */

/** The part of tfjs-node's backend that streamgrad calls directly (these kernels, and `worker/denseGradients.ts`). */
export interface NodeBackend {
  executeSingleOutput(name: string, attributes: readonly OpAttribute[], inputs: readonly tf.TensorInfo[]): tf.Tensor;
  applyActivation(x: tf.Tensor, activation: string, preluActivationWeights?: tf.Tensor, leakyreluAlpha?: number): tf.Tensor;
  incRef(dataId: tf.DataId): void;
  readonly binding: {
    readonly TF_ATTR_BOOL: number;
    readonly TF_ATTR_TYPE: number;
    readonly TF_FLOAT: number;
    /** 1 in the addon that `infra/tensorflow/setup` builds, which holds signals while TensorFlow runs (see `backend.ts`). */
    readonly STREAMGRAD_SIGNALS_HELD?: number;
  };
}

/** The tfjs-node backend, when it is the one running. */
export function tensorflowBackend(): NodeBackend | undefined {
  return tf.getBackend() === 'tensorflow' ? (tf.backend() as unknown as NodeBackend) : undefined;
}

/** An attribute of a TensorFlow op. */
export interface OpAttribute {
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

type KernelFunc = tf.KernelConfig['kernelFunc'];
type KernelArgs = Parameters<KernelFunc>[0];
/** A lean kernel: tfjs' arguments, the backend as the kernels use it, and tfjs-node's own kernel for the other cases. */
type LeanKernel = (args: KernelArgs, backend: NodeBackend, original: KernelFunc) => ReturnType<KernelFunc>;
/** The TensorFlow dtype attribute `T` of an op. */
type TypeAttribute = (dtype: tf.DataType) => OpAttribute;

/** What tfjs-node's Identity kernel does: the same data, one more reference to it. */
function sameData(backend: NodeBackend, x: tf.TensorInfo): tf.TensorInfo {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

function leanStep(type: TypeAttribute): LeanKernel {
  return (args, backend, original) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { alpha } = args.attrs as { alpha?: number };
    if ((alpha ?? 0) !== 0 || x.dtype !== 'float32') return original(args);
    const positive = backend.executeSingleOutput('Relu', [type(x.dtype)], [x]);
    const result = backend.executeSingleOutput('Sign', [type(x.dtype)], [positive]);
    positive.dispose();
    return result;
  };
}

function leanFusedMatMul(type: TypeAttribute): LeanKernel {
  return (args, backend, original) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const { transposeA, transposeB, activation, leakyreluAlpha } = args.attrs as unknown as FusedMatMulAttributes;
    if (!a || !b || preluActivationWeights || a.dtype !== 'float32' || b.dtype !== 'float32') return original(args);
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
  };
}

const passThroughCast: LeanKernel = (args, backend, original) => {
  const { x } = args.inputs as { x: tf.TensorInfo };
  return (args.attrs as { dtype: tf.DataType }).dtype === x.dtype ? sameData(backend, x) : original(args);
};

const passThroughReshape: LeanKernel = (args, backend, original) => {
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { shape } = args.attrs as { shape: readonly number[] };
  const unchanged = shape.length === x.shape.length && shape.every((size, i) => size === x.shape[i]);
  return unchanged ? sameData(backend, x) : original(args);
};

let restoreRegistered: (() => void) | undefined;

/**
 * Replaces tfjs-node's `Step`, `_FusedMatMul`, `Cast` and `Reshape` kernels with the lean ones (once; the tensorflow
 * backend must be registered). Returns a function that puts tfjs-node's own back (for tests).
 */
export async function useLeanTensorflowKernels(): Promise<() => void> {
  if (restoreRegistered) return restoreRegistered;
  const { createTensorsTypeOpAttr } = (await import('@tensorflow/tfjs-node/dist/nodejs_kernel_backend.js' as string)) as KernelBackendModule;
  const type: TypeAttribute = (dtype) => createTensorsTypeOpAttr('T', dtype);
  const lean: Record<string, LeanKernel> = { Step: leanStep(type), _FusedMatMul: leanFusedMatMul(type), Cast: passThroughCast, Reshape: passThroughReshape };
  const originals = Object.keys(lean).map((name) => {
    const kernel = tf.getKernel(name, 'tensorflow');
    if (!kernel) throw new Error(`tfjs-node has no '${name}' kernel to replace: is the tensorflow backend registered?`);
    return kernel;
  });
  const replace = (config: tf.KernelConfig) => {
    tf.unregisterKernel(config.kernelName, 'tensorflow');
    tf.registerKernel(config);
  };
  for (const original of originals) {
    const kernel = lean[original.kernelName]!;
    replace({ ...original, kernelFunc: (args) => kernel(args, args.backend as unknown as NodeBackend, original.kernelFunc) });
  }
  restoreRegistered = () => {
    originals.forEach(replace);
    restoreRegistered = undefined;
  };
  return restoreRegistered;
}
