import { defineCommand } from '../common/index.js';
import { eppCommand } from './options.js';
import { startEpp } from './epp.js';

export const eppCommandModule = defineCommand(eppCommand, async (values, logger) => {
  const epp = await startEpp(values, { logger });
  // Supervisors (pd-router dev, tuning runs) read the bound ports from this line.
  logger.info({ grpcPort: epp.grpcPort, healthPort: epp.healthPort, metricsPort: epp.metricsPort, secureServing: values.secureServing }, 'epp listening');
  return { stop: (deadlineMs) => epp.close(deadlineMs) };
});
