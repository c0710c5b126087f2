import { parseModelSpec } from '../../pipeline/common/model.js';
import { Replica } from '../../pipeline/worker/replica.js';
import { ShardState } from '../../pipeline/server/shardState.js';
import { codecFor, encodeTensor, type ParameterUpdate } from '../../schemas/index.js';
import { median, rates } from './stats.js';

/** Updates/s one shard applies (decode + Adam step) for the 16-64-64-1 MLP, all its variables on one shard, no Kafka. */
export function measurePsApplyRate(options: { quick: boolean }): { psApplyRate: number } {
  const spec = parseModelSpec({ kind: 'mlp', features: 16, layers: [{ units: 64 }, { units: 64 }], optimizer: { kind: 'adam', learningRate: 0.001 } });
  const replica = new Replica(spec);
  const weights = replica.weights();
  replica.dispose();
  const codec = codecFor('ParameterUpdate');
  const tensors = weights.map((w) => encodeTensor(w.name, w.shape, w.values.map((v) => v * 0.01), 'FP32'));
  const perRun = options.quick ? 500 : 2_000;
  // Each update covers new input offsets: the server refuses an update whose offsets it has taken in before.
  const encoded = Array.from({ length: perRun }, (_, i) => {
    const update: ParameterUpdate = {
      namespace: 'bench', shard: 0, workerId: 'w', baseVersion: i, sampleCount: 256, lossSum: 1, deadLettered: 0,
      offsets: [{ topic: 't', partition: 0, firstOffset: i * 256, lastOffset: i * 256 + 255 }], firstAppendTime: 0, lastAppendTime: 0, createdAt: 0,
      tensors, featureMoments: null, prequential: [],
    };
    return codec.encode(update);
  });
  const body = () => {
    const state = ShardState.initial('bench', 0, spec, weights);
    for (const bytes of encoded) {
      const decoded = codec.decode(bytes);
      if (!decoded.ok || state.take(decoded.value, { policy: 'apply', bound: 1_000_000 }, undefined).outcome !== 'applied') throw new Error('the benchmark update was not applied');
    }
  };
  rates(1, perRun, body);
  return { psApplyRate: median(rates(options.quick ? 3 : 7, perRun, body)) };
}
