import { setFlagsFromString } from 'node:v8';
import { defineCommand } from '../common/index.js';
import { sidecarCommand } from './options.js';
import { startSidecar } from './index.js';

/**
 * Memory: undici parses upstream answers with llhttp compiled to WebAssembly. Once that parser is hot, V8 recompiles it
 * with its optimizing compiler, whose working memory for llhttp's one very large function is ~30 MB, for about half a
 * second: the largest single part of the sidecar's peak RSS under load (130 -> 104 MB at 256 connections). Its
 * baseline (Liftoff) code parses the few small heads and bodies of each request fast enough (llhttp was ~1% of the
 * sidecar's CPU). Process-wide, so set here, where the sidecar is the process, before any upstream connection; NODE_OPTIONS
 * cannot carry V8 flags of this kind.
 */
setFlagsFromString('--liftoff-only');

export const sidecarCommandModule = defineCommand(sidecarCommand, async (values, logger) => {
  const sidecar = await startSidecar(values, logger);
  logger.info(
    {
      url: sidecar.url,
      ports: sidecar.ports,
      decoder: `${values.modelServerHost}:${values.modelServerPort}`,
      connector: values.kvConnector,
      ssrfProtection: sidecar.guard.mode,
      prefillFailurePolicy: values.prefillFailurePolicy,
      metricsPort: sidecar.metricsPort,
    },
    'sidecar listening',
  );
  return { stop: (delta) => sidecar.close(delta) };
});
