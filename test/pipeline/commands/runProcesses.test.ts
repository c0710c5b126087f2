import { describe, expect, it } from 'vitest';
import { cliCommand } from '../../../pipeline/commands/runProcesses.js';

describe('cliCommand', () => {
  const tsx = ['--require', '/repo/node_modules/tsx/dist/preflight.cjs', '--import', 'file:///repo/node_modules/tsx/dist/loader.mjs'];

  it('starts the children through the same loader from sources', () => {
    const command = cliCommand([...tsx, '--cpu-prof'], undefined);
    expect(command.slice(0, 5)).toEqual([...tsx, '--cpu-prof']);
    expect(command.at(-1)).toMatch(/pipeline\/cli\.(ts|js)$/);
  });

  it('starts a compiled CLI without any of the loader preloads (they turn on source maps: ~150 MB a process), keeping the other flags', () => {
    expect(cliCommand([...tsx, '--cpu-prof', '--cpu-prof-dir=out', '--inspect=9229'], 'dist/pipeline/cli.js')).toEqual(['--cpu-prof', '--cpu-prof-dir=out', 'dist/pipeline/cli.js']);
    expect(cliCommand(['-r', 'x.cjs', '--import=tsx', '--loader', 'tsx', '--max-old-space-size=512'], 'dist/pipeline/cli.js')).toEqual(['--max-old-space-size=512', 'dist/pipeline/cli.js']);
  });
});
