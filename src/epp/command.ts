import { defineCommand } from '../common/index.js';
import { eppCommand } from './options.js';
import { startEpp } from './epp.js';

export const eppCommandModule = defineCommand(eppCommand, async (values, logger) => {
  // startEpp logs "epp listening" with the bound ports, which supervisors (pd-router dev, tuning runs) read.
  const epp = await startEpp(values, { logger });
  return { stop: (deadlineMs) => epp.close(deadlineMs) };
});
