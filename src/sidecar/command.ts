import { defineCommand } from '../common/index.js';
import { sidecarCommand } from './options.js';
import { startSidecar } from './index.js';

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
