import type { Kafka } from 'kafkajs';
import { ReplaySubject } from 'rxjs';
import { codecFor } from '../../schemas/codec.js';
import type { ExperimentConfig } from '../common/config.js';
import { stalenessBucketTop } from '../common/staleness.js';
import { parseReport, type EvaluationReport, type IngestReport } from '../common/reports.js';
import { tailTopic } from '../common/readTopic.js';
import { topicsOf } from '../common/topics.js';
import { StatusReader, type StatusReport } from '../commands/status.js';

/** What the dashboard shows at one moment: `status --json`'s report, and what only the dashboard reads. */
export interface DashboardFrame {
  readonly status: StatusReport;
  /** Records of `<ns>.dlq` by reason (the workers' rejected inputs and the ingest bridge's unmappable messages). */
  readonly deadLettersByReason: Readonly<Record<string, number>>;
  /** The newest figures of each ingest bridge that reported in the last minute. */
  readonly ingest: readonly IngestReport[];
  /** The newest `evaluate` scores, if any. */
  readonly evaluation: EvaluationReport | undefined;
  /** The staleness histogram of all shards: the top of each bucket and its updates. */
  readonly stalenessHistogram: ReadonlyArray<{ readonly upTo: number; readonly updates: number }>;
}

/** One point of the time series a new browser tab starts with. */
export interface HistoryPoint {
  readonly at: number;
  readonly samplesPerSecond: number | null;
  readonly loss: number | null;
  readonly lag: number;
  readonly freshnessMs: readonly number[];
  readonly versions: readonly number[];
  readonly ingestPerSecond: number | null;
}

/** The points kept for new tabs: 15 minutes at one frame a second. */
const historyLength = 900;
/** An ingest bridge that has not reported for this long is no longer shown. */
const ingestStaleMs = 60_000;

/**
 * Reads a namespace for the dashboard, from Kafka only: `status`' reader, a tail of `<ns>.dlq` (reasons) and of
 * `<ns>.reports` (ingest bridges, evaluations). `frame()` takes a reading; the last {@link historyLength} are kept
 * as points for tabs that open later. One reader serves every tab.
 */
export class DashboardReader {
  private readonly status: StatusReader;
  // Replays: a tail whose source subscribes after stop() still stops.
  private readonly stop$ = new ReplaySubject<void>(1);
  private readonly tails: Promise<void>[] = [];
  private readonly deadLetters: Record<string, number> = {};
  private readonly ingest = new Map<string, IngestReport>();
  private evaluation: EvaluationReport | undefined;
  private readonly points: HistoryPoint[] = [];
  /** The ingest bridges' total output at their newest report, and the rate it gave (reports come every 2 s, frames every 1 s). */
  private previousIngest: { at: number; out: number; rate: number | null } | undefined;

  constructor(
    private readonly kafka: Kafka,
    private readonly config: Pick<ExperimentConfig, 'namespace' | 'inputTopic'>,
  ) {
    this.status = new StatusReader(kafka, config);
  }

  async start(): Promise<void> {
    await this.status.start();
    const topics = topicsOf(this.config.namespace);
    const admin = this.kafka.admin();
    await admin.connect();
    const existing = new Set(await admin.listTopics().finally(() => admin.disconnect()));
    const deadLetterCodec = codecFor('DeadLetter');
    if (existing.has(topics.deadLetters)) {
      this.tails.push(tailTopic(this.kafka, topics.deadLetters, (record) => {
        const decoded = deadLetterCodec.decode(record.value, record);
        if (decoded.ok) this.deadLetters[decoded.value.errorCode] = (this.deadLetters[decoded.value.errorCode] ?? 0) + 1;
      }, this.stop$));
    }
    // A namespace trained before reports existed has no reports topic: nothing to show then.
    if (existing.has(topics.reports)) this.tails.push(tailTopic(this.kafka, topics.reports, (record) => this.noteReport(record.value), this.stop$));
  }

  private noteReport(value: Buffer | null): void {
    const report = parseReport(value);
    if (report?.kind === 'ingest') this.ingest.set(report.source, report);
    else if (report?.kind === 'evaluation' && (this.evaluation === undefined || report.at >= this.evaluation.at)) this.evaluation = report;
  }

  /** A reading now; it joins the history. */
  async frame(): Promise<DashboardFrame> {
    const status = await this.status.read();
    const now = Date.now();
    const ingest = [...this.ingest.values()].filter((report) => now - report.at < ingestStaleMs).sort((a, b) => a.source.localeCompare(b.source));
    const counts = status.shards.reduce<number[]>((sum, shard) => {
      shard.stalenessCounts.forEach((n, bucket) => (sum[bucket] = (sum[bucket] ?? 0) + n));
      return sum;
    }, []);
    const frame: DashboardFrame = {
      status,
      deadLettersByReason: { ...this.deadLetters },
      ingest,
      evaluation: this.evaluation,
      stalenessHistogram: Array.from(counts, (updates, bucket) => ({ upTo: stalenessBucketTop(bucket), updates: updates ?? 0 })),
    };
    this.points.push(this.point(frame));
    if (this.points.length > historyLength) this.points.shift();
    return frame;
  }

  private point(frame: DashboardFrame): HistoryPoint {
    const at = frame.status.at;
    const ingestPerSecond = this.ingestRate(frame.ingest);
    return {
      at,
      samplesPerSecond: frame.status.samplesPerSecond ?? null,
      loss: frame.status.loss ?? null,
      lag: frame.status.lag,
      freshnessMs: frame.status.shards.map((shard) => shard.freshnessMs),
      versions: frame.status.shards.map((shard) => shard.version),
      ingestPerSecond,
    };
  }

  /** Messages/s through the ingest bridges, between their two newest reports (null without bridges). */
  private ingestRate(reports: readonly IngestReport[]): number | null {
    if (reports.length === 0) return null;
    const at = Math.max(...reports.map((report) => report.at));
    const out = reports.reduce((sum, report) => sum + report.samplesOut + report.deadLetters, 0);
    const previous = this.previousIngest;
    if (previous && previous.at === at) return previous.rate;
    const rate = previous ? Math.max(0, ((out - previous.out) * 1_000) / Math.max(1, at - previous.at)) : null;
    this.previousIngest = { at, out, rate };
    return rate;
  }

  /** The kept points, oldest first. */
  history(): readonly HistoryPoint[] {
    return this.points;
  }

  async stop(): Promise<void> {
    this.stop$.next();
    await Promise.all(this.tails);
    await this.status.stop();
  }
}
