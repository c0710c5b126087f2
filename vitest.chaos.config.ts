import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// npm run chaos: the chaos test of npm test and the scenarios too long or too new for it (a broker killed and
// restarted). The include list replaces the base one (mergeConfig would add to it, and run every test).
export default defineConfig({ ...base, test: { ...base.test, include: ['test/pipeline/chaos.test.ts', 'test/chaos/**/*.chaos.ts'], testTimeout: 3_600_000 } });
