import type { z } from 'zod';
import { ConfigError } from '../schemas/errors.js';

/**
 * Parses options against their zod schema when a pipeline is built. The
 * {@link ConfigError} names the first bad field, e.g. `fromKafka.maxInFlight`.
 */
export function validateOptions<S extends z.ZodType>(owner: string, schema: S, options: unknown): z.output<S> {
  const parsed = schema.safeParse(options);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const field = [owner, ...issue.path.map(String)].join('.');
  throw new ConfigError(field, issue.message, parsed.error);
}
