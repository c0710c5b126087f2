import { defineConfig, mergeConfig } from 'vitest/config';
import base from './vitest.config.js';

// npm run chaos: the chaos test of npm test and the scenarios too long or too new for it (a broker killed and restarted).
export default mergeConfig(base, defineConfig({ test: { include: ['test/pipeline/chaos.test.ts', 'test/chaos/**/*.chaos.ts'], testTimeout: 3_600_000 } }));
