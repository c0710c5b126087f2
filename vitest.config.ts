import { defineConfig } from 'vitest/config';

/**
 * Two projects: every test on the backend that `backend: auto` picks (native TensorFlow where
 * `npm ci` built it), and again on wasm the gradient checks and short end-to-end runs, so that
 * both backends are tested on every run. STREAMGRAD_BACKEND reaches the child processes too.
 */
const wasmChecks = [
  'test/operators/gradientStep.test.ts',
  'test/pipeline/worker/replica.test.ts',
  'test/pipeline/worker/worker.deltas.test.ts',
  'test/pipeline/worker/multiclass.test.ts',
  'test/pipeline/cli.run.test.ts',
];

export default defineConfig({
  test: {
    exclude: ['test/bench/**', 'node_modules/**'],
    globalSetup: ['test/support/globalSetup.ts'],
    setupFiles: ['test/support/leftBehind.ts'],
    pool: 'forks',
    // Memory tests measure what is retained after a full GC, not garbage waiting to be collected.
    poolOptions: { forks: { execArgv: ['--expose-gc'] } },
    // Two cores, and the broker needs one of them.
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 120_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
    projects: [
      { extends: true, test: { name: 'auto', include: ['test/**/*.test.ts'] } },
      { extends: true, test: { name: 'wasm', include: wasmChecks, env: { STREAMGRAD_BACKEND: 'wasm' } } },
    ],
  },
});
