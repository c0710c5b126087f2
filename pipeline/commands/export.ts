import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { encodeTensor, tensorErrorBounds } from '../../schemas/tensorCodec.js';
import type { ModelSnapshot } from '../../schemas/types.js';
import type { ModelSpec } from '../common/model.js';
import { packageInfo } from '../common/packageInfo.js';
import { Replica } from '../worker/replica.js';

/** TF.js weight quantization: uint8 (affine, per tensor) or float16. */
export type Quantization = 'uint8' | 'float16';

/**
 * The documented error of a quantized weight: uint8 stores each tensor as
 * `min + q·scale` with `scale = (max − min) / 255`, so a weight is off by at most
 * `scale / 2` (plus float32 rounding); float16 is the wire's FP16 encoding (TF.js
 * only widens it back, exactly), so its bound is `tensorErrorBounds.FP16`.
 */
export const quantizationErrorBound = {
  uint8: (min: number, max: number) => ((max - min) / 255) * 0.5 * (1 + 1e-6) + 1e-7 * Math.max(Math.abs(min), Math.abs(max)),
  float16: tensorErrorBounds.FP16,
} as const;

/** What {@link exportModel} wrote. */
export interface ExportResult {
  readonly dir: string;
  readonly modelJson: string;
  readonly weightsFile: string;
  readonly weightBytes: number;
  /** The snapshot version of each shard that the weights come from. */
  readonly versions: readonly number[];
}

interface WeightSpec {
  name: string;
  shape: number[];
  dtype: 'float32';
  quantization?: { dtype: 'uint8'; min: number; scale: number } | { dtype: 'float16' };
}

/** Quantizes one float32 tensor for TF.js' standard loader (which dequantizes `q·scale + min` or float16 on load). */
function quantize(spec: WeightSpec, values: Float32Array, how: Quantization): { spec: WeightSpec; bytes: Buffer } {
  if (how === 'float16') return { spec: { ...spec, quantization: { dtype: 'float16' } }, bytes: encodeTensor(spec.name, spec.shape, values, 'FP16').bytes };
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (values.length === 0) min = max = 0;
  const scale = max > min ? (max - min) / 255 : 1;
  const bytes = Buffer.alloc(values.length);
  for (let i = 0; i < values.length; i++) bytes[i] = Math.min(255, Math.max(0, Math.round((values[i]! - min) / scale)));
  return { spec: { ...spec, quantization: { dtype: 'uint8', min, scale } }, bytes };
}

/**
 * Writes the model of `snapshots` (the newest of each shard) as a TensorFlow.js
 * LayersModel directory: `model.json` (topology and weights manifest) and
 * `weights.bin`, optionally with quantized weights. A model trained with `normalize` has its input scaling folded
 * into the first layer, so it takes raw features like the samples'. It loads with
 * `tf.loadLayersModel('file://<dir>/model.json')` under tfjs-node, or with
 * plain `@tensorflow/tfjs` after {@link registerFileSystem}.
 */
export async function exportModel(spec: ModelSpec, snapshots: ReadonlyMap<number, ModelSnapshot>, dir: string, quantization?: Quantization): Promise<ExportResult> {
  const replica = Replica.served(spec, snapshots.values());
  try {
    // With `normalize`, the exported model takes raw features: the scaling moves into its first layer.
    replica.foldScaling();
    let artifacts: tf.io.ModelArtifacts | undefined;
    await replica.model.save(
      tf.io.withSaveHandler(async (saved) => {
        artifacts = saved;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    if (!artifacts?.weightSpecs || artifacts.weightData === undefined) throw new Error('TensorFlow.js produced no weights to export');
    const data = Buffer.from(tf.io.CompositeArrayBuffer.join(artifacts.weightData));
    const specs: WeightSpec[] = [];
    const chunks: Buffer[] = [];
    let offset = 0;
    for (const weight of artifacts.weightSpecs) {
      const count = weight.shape.reduce((a, b) => a * b, 1);
      const values = new Float32Array(data.buffer.slice(data.byteOffset + offset, data.byteOffset + offset + count * 4));
      offset += count * 4;
      const plain: WeightSpec = { name: weight.name, shape: [...weight.shape], dtype: 'float32' };
      const written = quantization ? quantize(plain, values, quantization) : { spec: plain, bytes: Buffer.from(values.buffer) };
      specs.push(written.spec);
      chunks.push(written.bytes);
    }
    const out = resolve(dir);
    mkdirSync(out, { recursive: true });
    const weightsFile = join(out, 'weights.bin');
    const weights = Buffer.concat(chunks);
    writeFileSync(weightsFile, weights);
    const modelJson = join(out, 'model.json');
    const versions = [...snapshots.values()].sort((a, b) => a.shard - b.shard).map((s) => s.version);
    writeFileSync(
      modelJson,
      JSON.stringify(
        {
          format: 'layers-model',
          generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
          convertedBy: `streamgrad ${packageInfo().version} (snapshot versions ${versions.join('/')}${quantization ? `, ${quantization} weights` : ''})`,
          modelTopology: artifacts.modelTopology,
          weightsManifest: [{ paths: ['weights.bin'], weights: specs }],
        },
        null,
        1,
      ),
    );
    return { dir: out, modelJson, weightsFile, weightBytes: weights.length, versions };
  } finally {
    replica.dispose();
  }
}

let registered = false;

/**
 * Lets plain `@tensorflow/tfjs` load `file://` URLs with `tf.loadLayersModel`,
 * as tfjs-node does (where tfjs-node is loaded, its handler serves them).
 */
export function registerFileSystem(): void {
  if (registered) return;
  registered = true;
  tf.io.registerLoadRouter((url): tf.io.IOHandler => {
    const path = Array.isArray(url) ? url[0] : url;
    // A router answers null for URLs that are not its own (the declared type omits it); tfjs-node has its own.
    if (typeof path !== 'string' || !path.startsWith('file://') || tf.findBackendFactory('tensorflow')) return null as unknown as tf.io.IOHandler;
    const file = fileURLToPath(path);
    return { load: () => loadModelFile(file) };
  });
}

/** A saved model's artifacts: its model.json and the weight files it names, beside it. */
async function loadModelFile(file: string): Promise<tf.io.ModelArtifacts> {
  const modelJson = JSON.parse(readFileSync(file, 'utf8')) as tf.io.ModelJSON;
  return tf.io.getModelArtifactsForJSON(modelJson, async (manifest) => {
    const specs = manifest.flatMap((group) => group.weights);
    const joined = Buffer.concat(manifest.flatMap((group) => group.paths.map((p) => readFileSync(join(dirname(file), p)))));
    return [specs, joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength)];
  });
}
