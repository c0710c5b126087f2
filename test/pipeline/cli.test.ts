import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildCli } from '../../pipeline/cli.js';

describe('streamgrad CLI', () => {
  it('reports the package version', async () => {
    const expected = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
    let printed = '';
    const cli = buildCli().exitOverride().configureOutput({ writeOut: (text) => { printed += text; } });
    await expect(cli.parseAsync(['node', 'streamgrad', '--version'])).rejects.toMatchObject({ code: 'commander.version' });
    expect(printed.trim()).toBe(expected);
  });
});
