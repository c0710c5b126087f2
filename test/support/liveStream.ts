import type { ModelSpec } from '../../pipeline/common/model.js';
import { seededRandom, simulatedReading } from '../../pipeline/commands/simulator.js';
import type { TrainingSample } from '../../schemas/types.js';
import { InProcessJob } from './inProcessJob.js';

/** The input partition of a simulated reading, of `partitions`: by device number, as the demo's stream keys them. */
export function partitionOfDevice(sample: TrainingSample, partitions = 4): number {
  return Number(sample.deviceId.replace(/\D/g, '')) % partitions;
}

/** The demo's stream: 200 simulated devices at 5,000 readings/s, on 4 partitions by device, cut into 50 ms ticks. */
export function demoStream(seconds: number, seed = 7): TrainingSample[][] {
  const fleet = { devices: 200, ratePerSecond: 5000, seed, dayMs: 60_000, dropoutRate: 0 };
  const t0 = 1_790_000_000_000;
  const random = seededRandom(seed);
  const ticks: TrainingSample[][] = [];
  for (let k = 0, i = 0; k < seconds * 20; k++) {
    const tick: TrainingSample[] = [];
    for (let j = 0; j < 250; j++, i++) tick.push(simulatedReading(i % fleet.devices, t0 + i * 0.2, random, fleet, t0));
    ticks.push(tick);
  }
  return ticks;
}

/**
 * Trains `spec` on a live stream as a job of `workers` workers does, in one process (`InProcessJob`): each tick, each
 * worker scores and then trains its partitions' readings (partition p to worker p mod `workers`) as one batch, and
 * takes in snapshots `delay` updates late. Each worker's share of the input is set as a worker in a group sets it.
 * Returns the prequential mean squared error of each 5 s window (100 ticks).
 */
export function liveStreamLosses(spec: ModelSpec, ticks: readonly TrainingSample[][], workers: number, delay: number): number[] {
  const job = new InProcessJob(spec, workers, delay);
  for (const replica of job.replicas) replica.setDataShare(1 / workers);
  const offsets = Array.from({ length: workers }, () => 0);
  const windows: number[] = [];
  let lossSum = 0;
  let count = 0;
  ticks.forEach((tick, k) => {
    for (let w = 0; w < workers; w++) {
      const batch = tick.filter((s) => partitionOfDevice(s) % workers === w);
      lossSum += job.replicas[w]!.lossSum(batch);
      count += batch.length;
      job.step(w, batch, w, offsets[w]!);
      offsets[w]! += batch.length;
    }
    if ((k + 1) % 100 === 0) {
      windows.push(lossSum / count);
      lossSum = 0;
      count = 0;
    }
  });
  job.dispose();
  return windows;
}
