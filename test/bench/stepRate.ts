import { selectBackend, type BackendName } from '../../pipeline/common/backend.js';
import { parseModelSpec } from '../../pipeline/common/model.js';
import { Replica } from '../../pipeline/worker/replica.js';
import type { TrainingSample } from '../../schemas/index.js';
import { median, rates } from './stats.js';

/** Result of {@link measureStepRate}: samples/s of isolated gradient steps. */
export interface StepRate {
  readonly stepRate: number;
  readonly stepRateRuns: number[];
  readonly backend: BackendName;
}

/** Gradient steps of a 16-64-64-1 MLP at batch 256 on the default backend, no Kafka. */
export async function measureStepRate(options: { quick: boolean }): Promise<StepRate> {
  const backend = await selectBackend();
  const replica = new Replica(parseModelSpec({ kind: 'mlp', features: 16, layers: [{ units: 64 }, { units: 64 }] }));
  const batch: TrainingSample[] = Array.from({ length: 256 }, (_, i) => ({
    deviceId: `d${i}`,
    eventTime: i,
    features: Array.from({ length: 16 }, (_, f) => Math.fround(Math.sin(i + f))),
    label: Math.fround(Math.cos(i)),
    labels: [],
    weight: 1,
    attributes: {},
  }));
  const steps = options.quick ? 100 : 400;
  const body = () => {
    for (let i = 0; i < steps; i++) replica.gradients(batch);
  };
  rates(1, steps * 256, body);
  const runs = rates(options.quick ? 3 : 7, steps * 256, body);
  replica.dispose();
  return { stepRate: median(runs), stepRateRuns: runs, backend };
}
