import { describe, expect, it } from 'vitest';
import { BackendError, BrokerUnreachableError, exitCodeOf, NamespaceError, SnapshotDecodeError } from '../../../pipeline/common/errors.js';
import { SourceError } from '../../../operators/errors.js';
import { ConfigError } from '../../../schemas/errors.js';

describe('exitCodeOf', () => {
  it('answers 2 for errors that mean the command cannot run as given, 1 for failures while it ran', () => {
    const cannotRun = [new ConfigError('batchSize', 'must be positive'), new NamespaceError('ns', 'unknown'), new BrokerUnreachableError(['127.0.0.1:1'], 'refused'), new BackendError('wasm', 'no')];
    expect(cannotRun.map(exitCodeOf)).toEqual([2, 2, 2, 2]);
    const failed = [new SourceError('gone'), new SnapshotDecodeError({ topic: 'ns.model', partition: 0, offset: '3' }, 'bad'), new Error('plain'), 'a string'];
    expect(failed.map(exitCodeOf)).toEqual([1, 1, 1, 1]);
  });
});
