import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify as toYaml } from 'yaml';
import { defineCommand } from '../common/index.js';
import { loadgenCommand, resolveRunOptions } from './options.js';
import { inferencePerfReport, markdownSummary } from './report.js';
import { runLoad } from './runner.js';
import type { RunResult } from './types.js';

/** Writes report.yaml, report.json, summary.md and samples.jsonl into `dir`; returns the paths. */
export function writeRunFiles(dir: string, r: RunResult, scenario: Record<string, unknown> = {}): string[] {
  mkdirSync(dir, { recursive: true });
  const report = inferencePerfReport(r, scenario);
  const files = {
    'report.yaml': toYaml(report),
    'report.json': JSON.stringify(report, null, 2) + '\n',
    'summary.md': markdownSummary(r),
    'samples.jsonl': r.samples.map((s) => JSON.stringify(s)).join('\n') + (r.samples.length > 0 ? '\n' : ''),
  };
  return Object.entries(files).map(([name, text]) => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  });
}

/**
 * `pd-router loadgen`: one run, then exit (status 1 when every request failed). SIGINT/SIGTERM stop the run; the
 * requests finished so far are still reported.
 */
export const loadgenCommandModule = defineCommand(loadgenCommand, async (v, logger) => {
  const options = await resolveRunOptions(v);
  const abort = new AbortController();
  options.signal = abort.signal;
  options.progress = v.progress === 'on' ? true : v.progress === 'off' ? false : undefined;
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
    if (v.out) {
      const files = writeRunFiles(v.out, result);
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
      await Promise.race([done, new Promise((r) => setTimeout(r, deadlineMs).unref())]);
    },
  };
});
