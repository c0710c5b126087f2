import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IHeaders } from 'kafkajs';
import { headerText } from '../../operators/parameterUpdates.js';
import { ConfigError } from '../../schemas/errors.js';
import { readSecret, type SecretSource } from './secrets.js';

/**
 * Signed parameter updates (issue 16): a worker signs the encoded value of every update record with HMAC-SHA-256 under
 * the namespace's current key and names the key in a header; a server that has keys refuses (counts and
 * dead-letters, as SIGNATURE) every update record whose signature is missing or does not verify under the key it
 * names. The keys come from environment variables or files, never from the experiment file, and are never printed.
 */

/** The headers of a signed update record. */
export const signatureHeaders = { keyId: 'streamgrad-key-id', signature: 'streamgrad-signature' } as const;

/** One key of `updateSigning.keys` in the experiment file: its id and where its secret is. */
export interface SigningKeySource extends SecretSource {
  readonly id: string;
}

/** A secret shorter than this many bytes is refused: HMAC-SHA-256 wants at least 128 bits of key. */
export const minimumSecretBytes = 16;

interface SigningKey {
  readonly id: string;
  readonly secret: Buffer;
}

/** Reads the secret of `source`, the `index`th key; the error names the field and the variable or file, never the secret. */
function secretOf(source: SigningKeySource, index: number): Buffer {
  const field = `config.updateSigning.keys.${index}`;
  const bytes = Buffer.from(readSecret(source, field, `the secret of key '${source.id}'`), 'utf8');
  if (bytes.length < minimumSecretBytes) throw new ConfigError(field, `the secret of key '${source.id}' has ${bytes.length} bytes; it needs at least ${minimumSecretBytes}`);
  return bytes;
}

function hmac(secret: Buffer, value: Buffer): Buffer {
  return createHmac('sha256', secret).update(value).digest();
}

/**
 * The keys of a namespace: the first signs, every one verifies. Rotation: add the new key after the current one
 * (servers then accept both), restart the servers, move it first (workers sign with it), restart the workers, and
 * once no update signed with the old key is left to apply, remove the old key.
 */
export class UpdateKeys {
  private readonly keys: ReadonlyMap<string, Buffer>;
  private readonly signing: SigningKey;

  private constructor(keys: readonly SigningKey[]) {
    this.signing = keys[0]!;
    this.keys = new Map(keys.map((key) => [key.id, key.secret]));
  }

  /** The keys of `updateSigning.keys`, with their secrets read now; undefined when the experiment signs nothing. */
  static load(sources: readonly SigningKeySource[] | undefined): UpdateKeys | undefined {
    if (sources === undefined || sources.length === 0) return undefined;
    return new UpdateKeys(sources.map((source, index) => ({ id: source.id, secret: secretOf(source, index) })));
  }

  /** The id of the key that signs. */
  get signingKeyId(): string {
    return this.signing.id;
  }

  /** The headers that sign an update record's encoded value. */
  sign(value: Buffer): Record<string, string> {
    return { [signatureHeaders.keyId]: this.signing.id, [signatureHeaders.signature]: hmac(this.signing.secret, value).toString('base64') };
  }

  /** Why an update record's signature does not hold (missing, an unknown key, or wrong), or undefined when it does. */
  refusal(value: Buffer | null, headers: IHeaders | undefined): string | undefined {
    const keyId = headerText(headers, signatureHeaders.keyId);
    const signature = headerText(headers, signatureHeaders.signature);
    if (keyId === undefined || signature === undefined) return `no ${signatureHeaders.keyId} and ${signatureHeaders.signature} headers: the update is not signed`;
    const secret = this.keys.get(keyId);
    if (!secret) return `signed with key '${keyId.slice(0, 64)}', which is not one of this namespace's keys (${[...this.keys.keys()].join(', ')})`;
    const expected = hmac(secret, value ?? Buffer.alloc(0));
    const given = Buffer.from(signature, 'base64');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return `the signature does not match the record under key '${keyId}'`;
    return undefined;
  }
}
