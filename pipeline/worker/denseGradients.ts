import * as tf from '@tensorflow/tfjs';
import { tensorflowBackend, type NodeBackend, type OpAttribute } from '../common/tensorflowKernels.js';
import { lossOf, probabilityEpsilon, type LossName, type ModelSpec } from '../common/model.js';

/**
 * A dense model's gradients on tfjs-node without tfjs' gradient tape: the forward pass as TensorFlow ops, the loss and
 * its derivative at the outputs in JavaScript (the outputs are read back for the prequential scores anyway), and the
 * backward pass written out: per layer a product for the kernel, BiasAddGrad for the bias, a product back to the layer's
 * input and the activation's own gradient op (ReluGrad, TanhGrad, SigmoidGrad, EluGrad).
 *
 * The tape records every op of the forward pass, then replays each op's gradient through tfjs' engine and layers; at
 * the sizes streamgrad trains (batches of 256, layers of tens to hundreds of units) that bookkeeping, not the
 * arithmetic, is most of a step. One step of the 16-64-64-1 MLP: 41 TensorFlow ops through the tape with the lean
 * kernels, 18 here. Measured on 2 cores (isolated steps at batch 256, one thread): see BENCHMARKS.md.
 *
 * It takes the models that are a stack of dense layers: `linear`, `logistic` and `mlp` without dropout, every
 * activation and loss they allow. Others (time series, dropout) and other backends keep the tape.
 * `test/pipeline/worker/denseGradients.test.ts` checks gradients, losses and scores against the tape's.
 */

type Activation = 'linear' | 'relu' | 'tanh' | 'sigmoid' | 'elu' | 'softmax';

interface DenseLayer {
  readonly kernel: tf.Variable;
  readonly bias: tf.Variable;
  /** Where the layer's kernel and bias are in the replica's variables. */
  readonly kernelIndex: number;
  readonly biasIndex: number;
  readonly activation: Activation;
}

/** What one batch gives: the summed gradients in the replica's variable order, and what the scores need. */
export interface DenseStep {
  readonly gradients: Float32Array[];
  readonly lossSum: number;
  /** The model's outputs, n × outputs. */
  readonly predicted: Float32Array;
  /** Each sample's loss times its weight. */
  readonly losses: Float32Array;
}

/** The layers of a dense model (name, activation) as `buildModel` makes them, or undefined for another model. */
function denseLayersOf(spec: ModelSpec): Array<{ name: string; activation: Activation }> | undefined {
  switch (spec.kind) {
    case 'linear':
      return [{ name: 'linear', activation: 'linear' }];
    case 'logistic':
      return [{ name: 'logistic', activation: spec.outputs > 1 ? 'softmax' : 'sigmoid' }];
    case 'mlp':
      if (spec.layers.some((layer) => layer.dropout > 0)) return undefined;
      return [...spec.layers.map((layer, i) => ({ name: `dense_${i}`, activation: layer.activation })), { name: 'output', activation: spec.outputActivation }];
    default:
      return undefined;
  }
}

/** The gradient op of a hidden layer's activation, from the layer's output: TensorFlow's name for it and its input order. */
const activationGradient: Record<Exclude<Activation, 'linear' | 'softmax'>, { op: string; outputFirst: boolean }> = {
  relu: { op: 'ReluGrad', outputFirst: false },
  elu: { op: 'EluGrad', outputFirst: false },
  tanh: { op: 'TanhGrad', outputFirst: true },
  sigmoid: { op: 'SigmoidGrad', outputFirst: true },
};

const activationOp: Record<Exclude<Activation, 'linear'>, string> = { relu: 'Relu', elu: 'Elu', tanh: 'Tanh', sigmoid: 'Sigmoid', softmax: 'Softmax' };

export class DenseGradients {
  private readonly type: OpAttribute;

  private constructor(
    private readonly backend: NodeBackend,
    private readonly layers: readonly DenseLayer[],
    private readonly loss: LossName,
    private readonly variableCount: number,
  ) {
    this.type = { name: 'T', type: backend.binding.TF_ATTR_TYPE, value: backend.binding.TF_FLOAT };
  }

  /** The tape-free step for this model, when it is a dense stack and tfjs-node runs; otherwise undefined. */
  static for(spec: ModelSpec, variables: ReadonlyArray<{ name: string; variable: tf.Variable }>): DenseGradients | undefined {
    const backend = tensorflowBackend();
    const described = denseLayersOf(spec);
    if (!backend || !described) return undefined;
    const indexOf = (name: string) => variables.findIndex((v) => v.name === name);
    const layers = described.map(({ name, activation }) => ({ kernelIndex: indexOf(`${name}/kernel`), biasIndex: indexOf(`${name}/bias`), activation }));
    // Every variable is some layer's kernel or bias, each kernel 2-D: otherwise the model is not what this expects.
    if (layers.some((l) => l.kernelIndex < 0 || l.biasIndex < 0 || variables[l.kernelIndex]!.variable.rank !== 2) || 2 * layers.length !== variables.length) return undefined;
    return new DenseGradients(backend, layers.map((l) => ({ ...l, kernel: variables[l.kernelIndex]!.variable, bias: variables[l.biasIndex]!.variable })), lossOf(spec), variables.length);
  }

  private op(name: string, inputs: readonly tf.TensorInfo[], attributes: readonly OpAttribute[] = [this.type]): tf.Tensor {
    return this.backend.executeSingleOutput(name, attributes, inputs);
  }

  /**
   * BatchMatMulV2, as the lean `_FusedMatMul` kernel runs it. Not MatMul: a worker whose steps ran MatMul with a
   * transposed input crashed (SIGSEGV, or glibc's "corrupted size vs. prev_size") within seconds under
   * `node --cpu-prof`, and never with BatchMatMulV2.
   */
  private matMul(a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean): tf.Tensor {
    const flag = (name: string, value: boolean) => ({ name, type: this.backend.binding.TF_ATTR_BOOL, value });
    return this.op('BatchMatMulV2', [a, b], [this.type, flag('adj_x', transposeA), flag('adj_y', transposeB)]);
  }

  /** The summed gradients of the batch: `x` n × inputs, `y` n × outputs, `w` the samples' weights. */
  compute(x: Float32Array, y: Float32Array, w: Float32Array, n: number): DenseStep {
    const { layers } = this;
    const outputs = layers[layers.length - 1]!.kernel.shape[1]!;
    // Only tensors leave the tidy: it walks what it returns, typed arrays element by element.
    let scored: Omit<DenseStep, 'gradients'> | undefined;
    const tensors = tf.tidy(() => {
      // The input of each layer, then the model's output.
      const activations: tf.Tensor[] = [tf.tensor2d(x, [n, layers[0]!.kernel.shape[0]!])];
      for (const layer of layers) {
        const linear = this.op('BiasAdd', [this.matMul(activations[activations.length - 1]!, layer.kernel, false, false), layer.bias]);
        activations.push(layer.activation === 'linear' ? linear : this.op(activationOp[layer.activation], [linear]));
      }
      const predicted = activations.pop()!.dataSync() as Float32Array;
      const { losses, lossSum, outputGradient } = lossAndGradient(this.loss, layers[layers.length - 1]!.activation, predicted, y, w, outputs);
      scored = { predicted, losses, lossSum };
      const gradients: tf.Tensor[] = new Array(this.variableCount);
      let gradient: tf.Tensor = tf.tensor2d(outputGradient, [n, outputs]);
      for (let l = layers.length - 1; l >= 0; l--) {
        const layer = layers[l]!;
        gradients[layer.kernelIndex] = this.matMul(activations[l]!, gradient, true, false);
        gradients[layer.biasIndex] = this.op('BiasAddGrad', [gradient]);
        if (l > 0) gradient = this.hiddenGradient(layers[l - 1]!.activation, this.matMul(gradient, layer.kernel, false, true), activations[l]!);
      }
      return gradients;
    });
    const gradients = tensors.map((gradient) => gradient.dataSync() as Float32Array);
    tf.dispose(tensors);
    return { ...scored!, gradients };
  }

  /** The gradient at a hidden layer's pre-activation, from the gradient at its `output`. */
  private hiddenGradient(activation: Activation, gradient: tf.Tensor, output: tf.Tensor): tf.Tensor {
    if (activation === 'linear') return gradient;
    if (activation === 'softmax') throw new RangeError('softmax is an output activation only');
    const { op, outputFirst } = activationGradient[activation];
    return this.op(op, outputFirst ? [output, gradient] : [gradient, output]);
  }
}

/**
 * The per-sample losses (times the weights), their sum, and the gradient of the summed loss at the output layer's
 * pre-activation, from its outputs: the same formulas as the tape's (`perSampleLoss` in `replica.ts`), probabilities
 * clipped to [ε, 1 − ε] with no gradient where the clip holds.
 */
/** The clip of probabilities in float32, as the tape's clipByValue has it. */
const lowest = Math.fround(probabilityEpsilon);
const highest = Math.fround(1 - probabilityEpsilon);

function lossAndGradient(loss: LossName, activation: Activation, predicted: Float32Array, y: Float32Array, w: Float32Array, outputs: number): { losses: Float32Array; lossSum: number; outputGradient: Float32Array } {
  const n = w.length;
  const losses = new Float32Array(n);
  const gradient = new Float32Array(predicted.length);
  let lossSum = 0;
  for (let i = 0; i < n; i++) {
    const row = i * outputs;
    let sampleLoss = 0;
    for (let o = row; o < row + outputs; o++) {
      const p = predicted[o]!;
      const target = y[o]!;
      const inRange = p >= lowest && p <= highest;
      const q = Math.min(highest, Math.max(lowest, p));
      if (loss === 'mse') {
        sampleLoss += (p - target) ** 2 / outputs;
        gradient[o] = (2 * (p - target)) / outputs;
      } else if (loss === 'binaryCrossentropy') {
        // 1 − q as float32 has it (the tape subtracts in float32): near 1, 1 − (1 − ε) is 1.19e-7, not 1e-7.
        const rest = Math.fround(1 - q);
        sampleLoss -= (target * Math.log(q) + (1 - target) * Math.log(rest)) / outputs;
        gradient[o] = inRange ? -(target / q - (1 - target) / rest) / outputs : 0;
      } else {
        sampleLoss -= target * Math.log(q);
        gradient[o] = inRange ? -target / q : 0;
      }
    }
    losses[i] = sampleLoss * w[i]!;
    lossSum += losses[i]!;
    throughOutputActivation(activation, predicted, gradient, row, outputs, w[i]!);
  }
  return { losses, lossSum, outputGradient: gradient };
}

/** Turns the gradient at a sample's outputs (in place, `row` … `row + outputs`) into the one before the output activation, times the sample's weight. */
function throughOutputActivation(activation: Activation, predicted: Float32Array, gradient: Float32Array, row: number, outputs: number, weight: number): void {
  let dot = 0;
  if (activation === 'softmax') for (let o = row; o < row + outputs; o++) dot += gradient[o]! * predicted[o]!;
  for (let o = row; o < row + outputs; o++) gradient[o] = beforeActivation(activation, predicted[o]!, gradient[o]!, dot) * weight;
}

/** The gradient `g` at an output `p` of `activation`, taken back through it (`dot`: Σ g·p over the sample's outputs, for softmax). */
function beforeActivation(activation: Activation, p: number, g: number, dot: number): number {
  switch (activation) {
    case 'linear':
      return g;
    case 'sigmoid':
      return g * p * (1 - p);
    case 'softmax':
      return p * (g - dot);
    case 'tanh':
      return g * (1 - p * p);
    case 'relu':
      return p > 0 ? g : 0;
    case 'elu':
      return p > 0 ? g : g * (p + 1);
  }
}
