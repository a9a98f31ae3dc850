/** Kubernetes access (kept out of common/index.ts so components that never talk to Kubernetes do not load the client). */
export * from './pool-watcher.js';
export * from './informer.js';
export * from './api-errors.js';
export * from './client.js';
export * from './kubeconfig.js';
export * from './list-watch.js';
