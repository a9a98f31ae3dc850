import { defineCommand } from '../common/index.js';
import { simCommand } from './options.js';
import { startSimulator } from './index.js';

export const simCommandModule = defineCommand(simCommand, async (values, logger) => {
  const sim = await startSimulator(values, logger);
  for (const r of sim.ranks) {
    logger.info(
      { url: r.url, rank: r.engine.rank, models: r.engine.servedModels, engineId: r.engine.engineId },
      'simulator listening',
    );
  }
  return { stop: (deadlineMs) => sim.close(deadlineMs) };
});
