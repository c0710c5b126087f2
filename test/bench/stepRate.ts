import { selectBackend, type BackendName } from '../../pipeline/common/backend.js';
import { parseModelSpec } from '../../pipeline/common/model.js';
import { Replica } from '../../pipeline/worker/replica.js';
import type { TrainingSample } from '../../schemas/index.js';
import { benchModel, softmaxBenchModel } from './pipelineRate.js';
import { median, rates } from './stats.js';

/** Result of {@link measureStepRate}: samples/s of isolated gradient steps. */
export interface StepRate {
  readonly stepRate: number;
  readonly stepRateRuns: number[];
  readonly backend: BackendName;
}

/** The models of the step rates: the end-to-end runs' own (the bench model and the 64-256-256-10 softmax classifier, Adam). */
export const stepModels = { mlp16: benchModel, softmax64: softmaxBenchModel } as const;

function batchOf(features: number, outputs: number): TrainingSample[] {
  return Array.from({ length: 256 }, (_, i) => ({
    deviceId: `d${i}`,
    eventTime: i,
    features: Array.from({ length: features }, (_, f) => Math.fround(Math.sin(i + f))),
    label: outputs === 1 ? Math.fround(Math.cos(i)) : i % outputs,
    labels: [],
    weight: 1,
    attributes: {},
  }));
}

/** Gradient steps (forward and backward) at batch 256 on `backend` (default: the one `auto` picks), no Kafka. */
export async function measureStepRate(options: { quick: boolean; backend?: BackendName; model?: keyof typeof stepModels }): Promise<StepRate> {
  const backend = await selectBackend(options.backend ? { backend: options.backend } : {});
  const spec = stepModels[options.model ?? 'mlp16'];
  const replica = new Replica(parseModelSpec(spec));
  const batch = batchOf(spec.features, 'outputs' in spec ? spec.outputs : 1);
  const steps = options.quick ? 100 : 400;
  const body = () => {
    for (let i = 0; i < steps; i++) replica.gradients(batch);
  };
  rates(1, steps * 256, body);
  const runs = rates(options.quick ? 3 : 7, steps * 256, body);
  replica.dispose();
  return { stepRate: median(runs), stepRateRuns: runs, backend };
}
