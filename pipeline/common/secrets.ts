import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../../schemas/errors.js';

/**
 * Where a secret is: an environment variable (`env`) or a file (`file`, its contents less one trailing newline),
 * never the experiment file itself. The one home of reading secrets: Kafka passwords and update-signing keys.
 */
export const secretSourceShape = {
  /** The name of the environment variable that holds the secret. */
  env: z.string().min(1).optional(),
  /** A file whose contents (less a trailing newline) are the secret. */
  file: z.string().min(1).optional(),
};

/** Exactly one of `env` and `file`. */
export function oneSecretSource(source: { env?: string | undefined; file?: string | undefined }): boolean {
  return (source.env === undefined) !== (source.file === undefined);
}

export const oneSecretSourceMessage = "give exactly one of 'env' and 'file'";

/** A secret's source on its own, as in `security.sasl.password`. */
export const secretSourceSchema = z.object(secretSourceShape).strict().refine(oneSecretSource, oneSecretSourceMessage);

export interface SecretSource {
  readonly env?: string | undefined;
  readonly file?: string | undefined;
}

/**
 * Reads the secret at `source`. `field` names the setting in errors (`config.security.sasl.password`), `what` the
 * secret ("the password of Kafka user 'worker'"); errors name the variable or the file, never the secret.
 */
export function readSecret(source: SecretSource, field: string, what: string): string {
  let secret: string;
  if (source.env !== undefined) {
    secret = process.env[source.env] ?? '';
    if (secret === '') throw new ConfigError(`${field}.env`, `the environment variable ${source.env} (${what}) is not set`);
  } else if (source.file !== undefined) {
    try {
      secret = readFileSync(source.file, 'utf8').replace(/\r?\n$/, '');
    } catch (error) {
      throw new ConfigError(`${field}.file`, `cannot read ${source.file} (${what}): ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    if (secret === '') throw new ConfigError(`${field}.file`, `${source.file} (${what}) is empty`);
  } else {
    throw new ConfigError(field, `${what} needs 'env' or 'file', where it is`);
  }
  return secret;
}
