import { codecFor, SampleColumns, SampleDecoder, type TrainingSample } from '../../schemas/index.js';
import { median, rates } from './stats.js';

/** Result of {@link measureDecodeRate}: samples/s of decode plus validation on one core. */
export interface DecodeRate {
  /** Into sample objects (`SampleDecoder.decode`). */
  readonly decodeRate: number;
  readonly decodeRateRuns: number[];
  /** Into the columns of batches of 256, as a worker lane does (`SampleDecoder.decodeInto`). */
  readonly columnarDecodeRate: number;
  readonly columnarDecodeRateRuns: number[];
}

function telemetrySample(i: number): TrainingSample {
  return {
    deviceId: `device-${String(i % 500).padStart(4, '0')}`,
    eventTime: 1_790_000_000_000 + i * 10,
    features: Array.from({ length: 16 }, (_, f) => Math.fround(20 + 5 * Math.sin(i / 100 + f) + (f % 3))),
    label: Math.fround(Math.cos(i / 50)),
    labels: [],
    weight: 1,
    attributes: {},
  };
}

/**
 * Decode plus validation of 16-feature `TrainingSample`s in the Confluent
 * framing, on one core, with no Kafka: the ceiling of any worker lane.
 */
export function measureDecodeRate(options: { quick: boolean }): DecodeRate {
  const codec = codecFor('TrainingSample', { framing: 'confluent', schemaId: 1 });
  const encoded = Array.from({ length: 4096 }, (_, i) => codec.encode(telemetrySample(i)));
  const samples = new SampleDecoder({ featureCount: 16, framing: 'confluent', schemaId: 1 });
  const perRun = options.quick ? 300_000 : 2_000_000;
  const origin = { topic: 'bench', partition: 0, offset: '0' };
  let accepted = 0;
  const body = () => {
    for (let i = 0; i < perRun; i++) {
      if (samples.decode(encoded[i & 4095], origin).ok) accepted++;
    }
  };
  rates(2, perRun, body); // warm-up: let the JIT settle
  accepted = 0;
  const runs = rates(options.quick ? 5 : 9, perRun, body);
  if (accepted !== perRun * runs.length) throw new Error(`decode bench rejected ${perRun * runs.length - accepted} valid samples`);

  const batchSize = 256;
  let columns = new SampleColumns(batchSize, 16, 1);
  const columnar = () => {
    for (let i = 0; i < perRun; i++) {
      if (columns.length === batchSize) columns = new SampleColumns(batchSize, 16, 1);
      if (samples.decodeInto(encoded[i & 4095], columns, origin) === undefined) accepted++;
    }
  };
  rates(2, perRun, columnar);
  accepted = 0;
  const columnarRuns = rates(options.quick ? 5 : 9, perRun, columnar);
  if (accepted !== perRun * columnarRuns.length) throw new Error(`columnar decode bench rejected ${perRun * columnarRuns.length - accepted} valid samples`);
  return { decodeRate: median(runs), decodeRateRuns: runs, columnarDecodeRate: median(columnarRuns), columnarDecodeRateRuns: columnarRuns };
}
