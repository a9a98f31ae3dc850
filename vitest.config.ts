import { defineConfig } from 'vitest/config';

// Every test bounds its time: a hung server or a missed event fails the test instead of stalling CI.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/interop/**', 'node_modules/**', 'dist/**'],
    // Upper bounds for a shared, loaded 2-core machine (each test synchronises on events, never on elapsed time).
    testTimeout: 120_000,
    hookTimeout: 120_000,
    teardownTimeout: 10_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
  },
});
