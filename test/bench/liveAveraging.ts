/**
 * Two workers on the demo's live stream, in one process (issue 14): the demo's model and stream (200 devices at
 * 5,000 readings/s on 4 partitions, 16-32-1 MLP, Adam 0.01) trained by `InProcessJob` with the real replicas and
 * server shards, snapshots reaching the workers `delay` updates late; each figure is the last 5 s window's
 * prequential loss, one per seed, then their median. Deterministic: the same seeds give the same figures.
 *
 *   SECONDS=30 SEEDS=1,2,3 npx tsx test/bench/liveAveraging.ts
 *   VARIANTS='[{"name":"2 workers, 20 late, 40 local steps","workers":2,"delay":20,"model":{"localSteps":40}}]' npx tsx test/bench/liveAveraging.ts
 */
import { selectBackend } from '../../pipeline/common/backend.js';
import { parseModelSpec, type ModelSpecInput } from '../../pipeline/common/model.js';
import { demoStream, liveStreamLosses } from '../support/liveStream.js';

interface Variant {
  readonly name: string;
  readonly workers: number;
  readonly delay: number;
  readonly model?: Partial<ModelSpecInput>;
}

const defaults: Variant[] = [
  { name: '1 worker', workers: 1, delay: 0 },
  { name: '2 workers, 0 late', workers: 2, delay: 0 },
  { name: '2 workers, 10 late', workers: 2, delay: 10 },
  { name: '2 workers, 40 late', workers: 2, delay: 40 },
  { name: '2 workers, 0 late, localSteps 1', workers: 2, delay: 0, model: { localSteps: 1 } },
  { name: '2 workers, 10 late, localSteps 1', workers: 2, delay: 10, model: { localSteps: 1 } },
];

await selectBackend();
const ticks = demoStream(Number(process.env.SECONDS ?? 30));
const variants = process.env.VARIANTS ? (JSON.parse(process.env.VARIANTS) as Variant[]) : defaults;
const seeds = (process.env.SEEDS ?? '1,2,3').split(',').map(Number);
for (const v of variants) {
  const losses = seeds.map((seed) => {
    const spec = parseModelSpec({ kind: 'mlp', features: 16, shards: 2, layers: [{ units: 32, activation: 'tanh' }], optimizer: { kind: 'adam', learningRate: 0.01 }, seed, ...v.model } as ModelSpecInput);
    return liveStreamLosses(spec, ticks, v.workers, v.delay).at(-1)!;
  });
  const median = [...losses].sort((a, b) => a - b)[Math.floor(losses.length / 2)]!;
  console.log(`${v.name.padEnd(36)} median ${median.toFixed(4)} (${losses.map((l) => l.toFixed(4)).join(', ')})`);
}
