import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// npm run chaos: the chaos test of npm test and the scenarios too long or too new for it (a broker killed and
// restarted), on the backend `backend: auto` picks: the base settings without its two projects.
const { projects: _projects, ...settings } = base.test ?? {};
export default defineConfig({ test: { ...settings, include: ['test/pipeline/chaos.test.ts', 'test/chaos/**/*.chaos.ts'], testTimeout: 3_600_000 } });
