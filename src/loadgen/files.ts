import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify as toYaml } from 'yaml';
import { inferencePerfReport, markdownSummary } from './report.js';
import type { RunResult } from './types.js';

/** Writes report.yaml, report.json, summary.md and samples.jsonl into `dir`; returns the paths. */
export function writeRunFiles(dir: string, runResult: RunResult, scenario: Record<string, unknown> = {}): string[] {
  mkdirSync(dir, { recursive: true });
  const report = inferencePerfReport(runResult, scenario);
  const files = {
    'report.yaml': toYaml(report),
    'report.json': JSON.stringify(report, null, 2) + '\n',
    'summary.md': markdownSummary(runResult),
    'samples.jsonl': runResult.samples.map((sample) => JSON.stringify(sample)).join('\n') + (runResult.samples.length > 0 ? '\n' : ''),
  };
  return Object.entries(files).map(([name, text]) => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  });
}
