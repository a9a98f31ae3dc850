import { defineConfig } from 'vitest/config';

// The interop suite (npm run test:interop): pd-router against software it did not write (llm-d-inference-sim, Envoy's
// generated ext_proc API, kube-apiserver and etcd, the upstream llm-d EPPs and sidecars). The global setup builds the
// pinned Go pieces once (cached in .cache/interop) and starts a shared control plane; without Go every test is skipped
// with a message saying what to install. Files run one at a time: they start real processes and check latencies, and
// the machine may have two cores.
export default defineConfig({
  test: {
    include: ['test/interop/**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**'],
    globalSetup: ['test/interop/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 15_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['default'],
  },
});
