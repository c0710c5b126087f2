import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/bench/**', 'node_modules/**'],
    globalSetup: ['test/support/globalSetup.ts'],
    pool: 'forks',
    // Memory tests measure what is retained after a full GC, not garbage waiting to be collected.
    poolOptions: { forks: { execArgv: ['--expose-gc'] } },
    // Two cores, and the broker needs one of them.
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 120_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
  },
});
