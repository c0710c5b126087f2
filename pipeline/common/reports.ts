import type { Producer } from 'kafkajs';
import { z } from 'zod';

/**
 * Reports: what processes outside training tell a dashboard, as JSON records on `<ns>.reports` (one partition, a
 * day's retention), keyed by `<kind>:<source>`. JSON rather than Avro: they are small, infrequent, read by people and
 * browsers, and their fields may grow; nothing in training depends on them.
 */

/** The ingest bridge's figures, every few seconds while it runs. */
export const ingestReportSchema = z.object({
  kind: z.literal('ingest'),
  /** The bridge's MQTT client id. */
  source: z.string(),
  /** ms since the epoch */
  at: z.number(),
  url: z.string(),
  messagesIn: z.number(),
  samplesOut: z.number(),
  deadLetters: z.number(),
  pending: z.number(),
  mqttConnected: z.boolean(),
  reconnects: z.number(),
  /** Median and 99th percentile of MQTT arrival to Kafka acknowledgement since the previous report, ms (undefined when idle). */
  ackLagP50Ms: z.number().optional(),
  ackLagP99Ms: z.number().optional(),
});

/** The scores of one `streamgrad evaluate` on a holdout topic. */
export const evaluationReportSchema = z.object({
  kind: z.literal('evaluation'),
  /** The holdout topic. */
  source: z.string(),
  at: z.number(),
  versions: z.array(z.number()),
  samples: z.number(),
  loss: z.number(),
  mae: z.number().optional(),
  rmse: z.number().optional(),
  accuracy: z.number().optional(),
  logLoss: z.number().optional(),
});

export const reportSchema = z.discriminatedUnion('kind', [ingestReportSchema, evaluationReportSchema]);
export type IngestReport = z.infer<typeof ingestReportSchema>;
export type EvaluationReport = z.infer<typeof evaluationReportSchema>;
export type Report = z.infer<typeof reportSchema>;

/** Writes `report` to the reports topic `topic`. */
export async function publishReport(producer: Producer, topic: string, report: Report): Promise<void> {
  await producer.send({ topic, messages: [{ key: `${report.kind}:${report.source}`, value: JSON.stringify(report) }] });
}

/** A report record's value, or undefined for anything else (a foreign or broken record is skipped, never fatal). */
export function parseReport(value: Buffer | null): Report | undefined {
  if (value === null) return undefined;
  try {
    const parsed = reportSchema.safeParse(JSON.parse(value.toString('utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
