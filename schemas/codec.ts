import { readFileSync } from 'node:fs';
import avro from 'avsc';
import { BadRecordError, ConfigError, EncodeError, type RecordOrigin, type RecordResult } from './errors.js';
import type { RecordName, RecordTypes } from './types.js';

/** An Avro schema as parsed JSON. */
export type AvroSchema = avro.Schema;

/**
 * The schema files in dependency order: a file only names types defined in the
 * files before it. Loading them in this order into one registry (with any Avro
 * library) gives every streamgrad type.
 */
export const schemaFiles = [
  'tensor.avsc',
  'offset-range.avsc',
  'partition-offset.avsc',
  'feature-moments.avsc',
  'prequential-window.avsc',
  'training-sample.avsc',
  'parameter-update.avsc',
  'model-snapshot.avsc',
  'dead-letter.avsc',
] as const;

const namespace = 'dev.streamgrad';

/**
 * How records sit in Kafka values.
 * - `raw`: the Avro binary encoding alone.
 * - `confluent`: the Confluent Schema Registry framing: magic byte 0, the writer
 *   schema id as a 4-byte big-endian integer, then the Avro binary encoding.
 */
export type Framing = 'raw' | 'confluent';

/** Finds the writer schema registered under a Confluent schema id; undefined when the id is unknown. */
export type WriterSchemaLookup = (schemaId: number) => AvroSchema | undefined;

/** Options of an {@link AvroCodec}. */
export interface CodecOptions {
  /** Default `raw`. */
  readonly framing?: Framing;
  /** `confluent` only: the id of this codec's own schema, written in front of every record it encodes. */
  readonly schemaId?: number;
  /** `confluent` only: writer schemas by id, for records written with another version of the schema. */
  readonly writerSchemas?: WriterSchemaLookup;
  /** Records longer than this many bytes are rejected before decoding (`OVERSIZED`). Default 1 MiB. */
  readonly maxRecordBytes?: number;
}

const defaultMaxRecordBytes = 1024 * 1024;
const confluentHeaderBytes = 5;

interface Tap {
  buf: Buffer;
  pos: number;
  readLong(): number;
  skipLong(): void;
  readString(): string;
  skipString(): void;
}
interface TypeInternals {
  _read(tap: Tap): unknown;
  _skip(tap: Tap): void;
}

/**
 * Avro block counts come from the bytes. A forged count (say 2^31 floats in a
 * 20-byte record) would make avsc allocate and loop that many times, so every
 * array and map refuses a block with more items than bytes left: each of our
 * item types takes at least one byte.
 */
function readBlockCount(tap: Tap): number {
  let count = tap.readLong();
  if (count < 0) {
    count = -count;
    tap.skipLong();
  }
  if (count > tap.buf.length - tap.pos) {
    throw new RangeError(`a block claims ${count} items but only ${Math.max(0, tap.buf.length - tap.pos)} bytes remain`);
  }
  return count;
}

// avsc freezes its types, so the guard is a subclass, put in place by a typeHook.
// Resolvers copy `_read` from the reader type, so resolved reads are guarded too.
class GuardedArrayType extends avro.types.ArrayType {
  _read(tap: Tap): unknown[] {
    const items = this.itemsType as unknown as TypeInternals;
    const values: unknown[] = [];
    for (let n = readBlockCount(tap); n !== 0; n = readBlockCount(tap)) {
      while (n--) values.push(items._read(tap));
    }
    return values;
  }

  _skip(tap: Tap): void {
    const items = this.itemsType as unknown as TypeInternals;
    for (let n = readBlockCount(tap); n !== 0; n = readBlockCount(tap)) {
      while (n--) items._skip(tap);
    }
  }
}

class GuardedMapType extends avro.types.MapType {
  _read(tap: Tap): Record<string, unknown> {
    const values = this.valuesType as TypeInternals;
    const entries: Record<string, unknown> = {};
    for (let n = readBlockCount(tap); n !== 0; n = readBlockCount(tap)) {
      while (n--) {
        const key = tap.readString();
        const value = values._read(tap);
        // A plain assignment to '__proto__' would drop the entry (or swap the prototype).
        if (key === '__proto__') Object.defineProperty(entries, key, { value, enumerable: true, writable: true, configurable: true });
        else entries[key] = value;
      }
    }
    return entries;
  }

  _skip(tap: Tap): void {
    const values = this.valuesType as TypeInternals;
    for (let n = readBlockCount(tap); n !== 0; n = readBlockCount(tap)) {
      while (n--) {
        tap.skipString();
        values._skip(tap);
      }
    }
  }
}

/**
 * avsc accepts longs down to -(2^53 - 2), but its zig-zag encoding of a
 * negative below -2^52 loses the low bit: it would write a different number.
 * This long refuses such values instead, so an encode never corrupts silently.
 */
const minLong = -(2 ** 52);

class GuardedLongType extends avro.types.LongType {
  _check(value: unknown, _flags: unknown, hook?: (value: unknown, type: avro.Type) => void): boolean {
    const valid = typeof value === 'number' && Number.isSafeInteger(value) && value >= minLong;
    if (!valid && hook) hook(value, this);
    return valid;
  }

  _write(tap: Tap, value: unknown): void {
    if (typeof value === 'number' && value < minLong) throw new RangeError(`long ${value} is below -2^52, which avsc cannot encode exactly`);
    (avro.types.LongType.prototype as unknown as { _write(tap: Tap, value: unknown): void })._write.call(this, tap, value);
  }
}

function guardedTypes(schema: AvroSchema, opts: unknown): avro.Type | undefined {
  if (schema === 'long') return new GuardedLongType();
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) return undefined;
  const { type, items } = schema as { type?: unknown; items?: unknown };
  if (type === 'long') return new GuardedLongType();
  if (type === 'array' && items !== 'null') return new GuardedArrayType(schema, opts);
  if (type === 'map') return new GuardedMapType(schema, opts);
  return undefined;
}

/** Parses a schema into an avsc type with guarded collections. Unions of null and one type decode to `T | null`. */
function parseSchema(schema: AvroSchema, registry: Record<string, avro.Type> = {}): avro.Type {
  return avro.Type.forSchema(schema, { registry, wrapUnions: 'auto', typeHook: guardedTypes });
}

interface SchemaFileSet {
  /** Parsed types by full name. */
  readonly types: Map<string, avro.Type>;
  /** The JSON of each named type's file, by full name. */
  readonly definitions: Map<string, AvroSchema>;
}

let builtInSchemas: SchemaFileSet | undefined;

/** Loads `schemas/*.avsc` in dependency order into one registry, once. */
function loadSchemaFiles(): SchemaFileSet {
  if (builtInSchemas) return builtInSchemas;
  const registry: Record<string, avro.Type> = {};
  const types = new Map<string, avro.Type>();
  const definitions = new Map<string, AvroSchema>();
  for (const file of schemaFiles) {
    const schema = JSON.parse(readFileSync(new URL(`./${file}`, import.meta.url), 'utf8')) as AvroSchema & { name: string };
    const fullName = `${namespace}.${schema.name}`;
    types.set(fullName, parseSchema(schema, registry));
    definitions.set(fullName, schema);
  }
  builtInSchemas = { types, definitions };
  return builtInSchemas;
}

function builtIn(name: string): avro.Type {
  const type = loadSchemaFiles().types.get(`${namespace}.${name}`);
  if (!type) throw new ConfigError('schema', `no schema named ${name} in schemas/`);
  return type;
}

/** Copies a schema, writing each named type from another file inline at its first use (as Avro requires). */
function inlineNamedTypes(schema: unknown, definitions: Map<string, AvroSchema>, defined: Set<string>): unknown {
  if (typeof schema === 'string') {
    const fullName = schema.includes('.') ? schema : `${namespace}.${schema}`;
    const definition = definitions.get(fullName);
    if (!definition || defined.has(fullName)) return schema;
    defined.add(fullName);
    return inlineNamedTypes(definition, definitions, defined);
  }
  if (Array.isArray(schema)) return schema.map((branch) => inlineNamedTypes(branch, definitions, defined));
  if (typeof schema !== 'object' || schema === null) return schema;
  const node = { ...(schema as Record<string, unknown>) };
  if (typeof node.name === 'string' && (node.type === 'record' || node.type === 'enum' || node.type === 'fixed')) {
    defined.add(node.name.includes('.') ? node.name : `${String(node.namespace ?? namespace)}.${node.name}`);
  }
  if (Array.isArray(node.fields)) {
    node.fields = node.fields.map((field: Record<string, unknown>) => ({ ...field, type: inlineNamedTypes(field.type, definitions, defined) }));
  }
  if ('items' in node) node.items = inlineNamedTypes(node.items, definitions, defined);
  if ('values' in node) node.values = inlineNamedTypes(node.values, definitions, defined);
  if (typeof node.type === 'object') node.type = inlineNamedTypes(node.type, definitions, defined);
  return node;
}

/**
 * The self-contained JSON schema of a streamgrad record, as in its .avsc file
 * (docs, defaults and logical types kept), with the named types it uses from
 * other files written inline: what a Schema Registry stores, and what a client
 * in another language can code against.
 */
export function schemaOf(name: RecordName | 'Tensor' | 'OffsetRange' | 'PartitionOffset'): AvroSchema {
  const { definitions } = loadSchemaFiles();
  const definition = definitions.get(`${namespace}.${name}`);
  if (!definition) throw new ConfigError('schema', `no schema named ${name} in schemas/`);
  return inlineNamedTypes(definition, definitions, new Set()) as AvroSchema;
}

function firstInvalidPath(type: avro.Type, value: unknown): { path: string; found: unknown } {
  let found: { path: string; found: unknown } = { path: '(record)', found: value };
  let first = true;
  type.isValid(value, {
    errorHook: (path, bad) => {
      if (first) found = { path: path.join('.') || '(record)', found: bad };
      first = false;
    },
  });
  return found;
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'is missing';
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return `has the invalid value ${String(value)}`;
  if (typeof value === 'string') return `has the invalid value ${JSON.stringify(value.slice(0, 40))}`;
  return `has an invalid ${Array.isArray(value) ? 'array' : typeof value}`;
}

/**
 * Encodes and decodes one record type in one framing. Decoding never throws:
 * it returns the value, or a {@link BadRecordError} to route to the dead-letter
 * topic. Encoding throws {@link EncodeError} naming the bad field.
 *
 * @example
 * const codec = codecFor('TrainingSample', { framing: 'confluent', schemaId: 7 });
 * const result = codec.decode(message.value, { topic, partition, offset });
 * if (result.ok) train(result.value); else deadLetter(result.error);
 */
export class AvroCodec<T> {
  readonly framing: Framing;
  readonly schemaName: string;
  private readonly schemaId: number;
  private readonly maxRecordBytes: number;
  private readonly writerSchemas: WriterSchemaLookup | undefined;
  private readonly resolvers = new Map<number, avro.Resolver | BadRecordError>();
  private readonly header: Buffer;

  constructor(private readonly type: avro.Type, options: CodecOptions = {}) {
    this.framing = options.framing ?? 'raw';
    this.schemaName = type.name ?? type.typeName;
    this.maxRecordBytes = options.maxRecordBytes ?? defaultMaxRecordBytes;
    this.writerSchemas = options.writerSchemas;
    if (this.framing !== 'raw' && this.framing !== 'confluent') {
      throw new ConfigError('framing', `must be 'raw' or 'confluent', got '${String(this.framing)}'`);
    }
    if (!Number.isInteger(this.maxRecordBytes) || this.maxRecordBytes <= 0) {
      throw new ConfigError('maxRecordBytes', `must be a positive whole number of bytes, got ${this.maxRecordBytes}`);
    }
    if (this.framing === 'confluent') {
      const id = options.schemaId;
      if (id === undefined || !Number.isInteger(id) || id < 0 || id > 0x7fffffff) {
        throw new ConfigError('schemaId', `the confluent framing needs the schema's registry id, a whole number from 0 to 2^31-1; got ${String(id)}`);
      }
      this.schemaId = id;
    } else {
      this.schemaId = -1;
    }
    this.header = Buffer.alloc(confluentHeaderBytes);
    this.header.writeInt32BE(Math.max(this.schemaId, 0), 1);
  }

  /** Encodes one record in this codec's framing. Throws {@link EncodeError} when the value does not fit the schema. */
  encode(value: T): Buffer {
    let body: Buffer;
    try {
      body = this.type.toBuffer(value);
    } catch (cause) {
      const { path, found } = firstInvalidPath(this.type, value);
      throw new EncodeError(this.schemaName, path, describeValue(found), cause);
    }
    if (this.framing === 'raw') return body;
    const framed = Buffer.allocUnsafe(confluentHeaderBytes + body.length);
    this.header.copy(framed, 0);
    body.copy(framed, confluentHeaderBytes);
    return framed;
  }

  /** Decodes one record. `origin` names the record in errors; `null` bytes (a tombstone) give `EMPTY`. */
  decode(bytes: Buffer | null | undefined, origin?: RecordOrigin): RecordResult<T> {
    if (!bytes || bytes.length === 0) {
      return { ok: false, error: new BadRecordError('EMPTY', origin, `expected a ${this.schemaName}, got ${bytes ? 'zero bytes' : 'no value'}`) };
    }
    if (bytes.length > this.maxRecordBytes) {
      return { ok: false, error: new BadRecordError('OVERSIZED', origin, `${bytes.length} bytes exceeds the limit of ${this.maxRecordBytes}`) };
    }
    let start = 0;
    let resolver: avro.Resolver | undefined;
    if (this.framing === 'confluent') {
      if (bytes[0] !== 0) {
        return { ok: false, error: new BadRecordError('BAD_MAGIC_BYTE', origin, `expected the Confluent magic byte 0, got 0x${(bytes[0] ?? 0).toString(16).padStart(2, '0')}`) };
      }
      if (bytes.length < confluentHeaderBytes) {
        return { ok: false, error: new BadRecordError('DECODE', origin, `${bytes.length} bytes is shorter than the 5-byte Confluent header`) };
      }
      const writerId = bytes.readInt32BE(1);
      if (writerId !== this.schemaId) {
        const found = this.resolverFor(writerId, origin);
        if (found instanceof BadRecordError) return { ok: false, error: found };
        resolver = found;
      }
      start = confluentHeaderBytes;
    }
    try {
      const { value, offset } = this.type.decode(bytes, start, resolver);
      if (offset < 0) {
        return { ok: false, error: new BadRecordError('DECODE', origin, `truncated: ${bytes.length} bytes end inside a ${this.schemaName}`) };
      }
      if (offset !== bytes.length) {
        return { ok: false, error: new BadRecordError('DECODE', origin, `${bytes.length - offset} bytes left over after a ${this.schemaName}`) };
      }
      return { ok: true, value: value as T };
    } catch (cause) {
      return { ok: false, error: new BadRecordError('DECODE', origin, `not a valid ${this.schemaName}: ${(cause as Error).message}`, cause) };
    }
  }

  private resolverFor(writerId: number, origin: RecordOrigin | undefined): avro.Resolver | BadRecordError {
    const cached = this.resolvers.get(writerId);
    if (cached) return cached;
    const writerSchema = this.writerSchemas?.(writerId);
    if (writerSchema === undefined) {
      // Not cached: a lookup backed by a registry may learn the id later.
      return new BadRecordError('UNKNOWN_SCHEMA_ID', origin, `writer schema id ${writerId} is not known (this codec's own id is ${this.schemaId})`);
    }
    let outcome: avro.Resolver | BadRecordError;
    try {
      outcome = this.type.createResolver(parseSchema(writerSchema));
    } catch (cause) {
      outcome = new BadRecordError('INCOMPATIBLE_SCHEMA', origin, `writer schema id ${writerId} cannot be read as ${this.schemaName}: ${(cause as Error).message}`, cause);
    }
    this.resolvers.set(writerId, outcome);
    return outcome;
  }
}

/** A codec for one of streamgrad's records, read with the schema in `schemas/`. */
export function codecFor<N extends RecordName>(name: N, options: CodecOptions = {}): AvroCodec<RecordTypes[N]> {
  return new AvroCodec<RecordTypes[N]>(builtIn(name), options);
}

/**
 * A codec for any self-contained Avro schema: another version of a streamgrad
 * record, or a schema of your own. Used for evolution tests and foreign producers.
 */
export function codecForSchema<T>(schema: AvroSchema, options: CodecOptions = {}): AvroCodec<T> {
  return new AvroCodec<T>(parseSchema(schema), options);
}
