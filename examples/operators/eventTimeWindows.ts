// Event-time windows with streamgrad's Flink-style operators: the mean temperature of each device per 10 s of event
// time, from readings that arrive up to 3 s out of order, and one reading that comes too late for its window.
// Run: npx tsx examples/operators/eventTimeWindows.ts
import { from, map, mergeMap } from 'rxjs';
import { keyBy, tumblingWindow, withWatermarks, type WindowStats } from 'streamgrad/operators';

interface Reading {
  readonly device: string;
  readonly eventTime: number;
  readonly celsius: number;
}

const start = Date.UTC(2026, 0, 1);
const readings: Reading[] = [];
for (let second = 0; second < 30; second++) {
  for (const [i, device] of ['boiler', 'cellar'].entries()) readings.push({ device, eventTime: start + second * 1_000, celsius: 20 + 10 * i + second / 10 });
}
// Out of order: every third reading arrives 2 s late; the boiler's reading of second 3 arrives 20 s late.
const arrival = (r: Reading, index: number) => r.eventTime + (index % 3 === 0 ? 2_000 : 0) + (r.device === 'boiler' && r.eventTime === start + 3_000 ? 20_000 : 0);
const arriving = readings.map((r, i) => ({ r, at: arrival(r, i) })).sort((a, b) => a.at - b.at).map(({ r }) => r);

const stats: WindowStats = { late: 0 };
from(arriving)
  .pipe(
    keyBy((reading) => reading.device),
    mergeMap((device$) =>
      device$.pipe(
        withWatermarks({ eventTimeOf: (reading) => reading.eventTime, maxOutOfOrdernessMs: 3_000 }),
        tumblingWindow({ sizeMs: 10_000, stats }),
        map((window) => {
          const mean = window.values.reduce((sum, reading) => sum + reading.celsius, 0) / window.values.length;
          return `${device$.key} ${new Date(window.start).toISOString().slice(11, 19)}: ${window.values.length} readings, mean ${mean.toFixed(2)} °C`;
        }),
      ),
    ),
  )
  .subscribe({ next: (line) => console.log(line), complete: () => console.log(`too late for any window: ${stats.late}`) });
