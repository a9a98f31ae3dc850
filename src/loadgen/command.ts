import { defineCommand } from '../common/index.js';
import { writeRunFiles } from './files.js';
import { loadgenCommand, resolveRunOptions } from './options.js';
import { markdownSummary } from './report.js';
import { runLoad } from './runner.js';

/**
 * `pd-router loadgen`: one run, then exit (status 1 when every request failed). SIGINT/SIGTERM stop the run; the
 * requests finished so far are still reported.
 */
export const loadgenCommandModule = defineCommand(loadgenCommand, async (optionValues, logger) => {
  const options = await resolveRunOptions(optionValues);
  const abort = new AbortController();
  options.signal = abort.signal;
  options.progress = optionValues.progress === 'on' ? true : optionValues.progress === 'off' ? false : undefined;
  logger.info(
    {
      url: options.baseUrl,
      model: options.model,
      profile: options.profile.name,
      arrival: options.arrival,
      requests: options.requests,
      durationSeconds: options.durationSeconds,
      timeScale: options.timeScale,
    },
    'load run starting',
  );
  const done = (async () => {
    const result = await runLoad(options);
    if (optionValues.out) {
      const files = writeRunFiles(optionValues.out, result);
      logger.info({ files }, 'report written');
    }
    process.stdout.write(markdownSummary(result));
    const s = result.summary.requests;
    process.exitCode = s.total > 0 && s.failures === s.total ? 1 : 0;
  })().catch((err: unknown) => {
    logger.error({ err }, 'load run failed');
    process.exitCode = 1;
  });
  return {
    stop: async (deadlineMs) => {
      abort.abort(new Error('interrupted'));
      await Promise.race([done, new Promise((resolve) => setTimeout(resolve, deadlineMs).unref())]);
    },
  };
});
