import { defineCommand } from '../common/index.js';
import { gatewayCommand } from './options.js';
import { startGateway } from './index.js';

export const gatewayCommandModule = defineCommand(gatewayCommand, async (values, logger) => {
  const gw = await startGateway(values, logger);
  logger.info({ url: gw.url, epp: values.epp, failureModeAllow: values.failureModeAllow }, 'gateway listening');
  return { stop: (delta) => gw.close(delta) };
});
