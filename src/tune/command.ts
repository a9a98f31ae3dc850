import { setMaxListeners } from 'node:events';
import { defineCommand } from '../common/index.js';
import { tuneCommand } from './options.js';
import { runTune } from './index.js';

export const tuneCommandModule = defineCommand(tuneCommand, async (values, logger) => {
  const ac = new AbortController();
  // One signal stops every request of the sweep.
  setMaxListeners(0, ac.signal);
  const done = runTune(values, logger, ac.signal).then(
    (rec) => {
      process.stdout.write(`\n${rec.text}\nResults: ${values.out}/results.md\n`);
      process.exit(0);
    },
    (err: unknown) => {
      logger.error({ err }, 'tuning run failed');
      process.exit(1);
    },
  );
  return {
    stop: async () => {
      ac.abort();
      await done;
    },
  };
});
