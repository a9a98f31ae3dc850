#!/usr/bin/env node
/**
 * pd-router: one binary, one command per component. `pd-router <command> --help` lists a command's flags.
 */
import type { CommandModule } from './common/index.js';
import { packageVersion } from './common/version.js';

const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
  sim: { summary: 'GPU-free vLLM simulator (llm-d-inference-sim compatible).', load: async () => (await import('./sim/command.js')).simCommandModule },
  sidecar: {
    summary: 'Decode-pod routing sidecar: remote prefill, then local decode (llm-d compatible).',
    load: async () => (await import('./sidecar/command.js')).sidecarCommandModule,
  },
  epp: { summary: 'Endpoint Picker: Envoy ext_proc server for P/D routing (llm-d EPP compatible).', load: async () => (await import('./epp/command.js')).eppCommandModule },
  gateway: {
    summary: 'Development/test stand-in for Envoy: ext_proc client of the EPP, then a streaming proxy.',
    load: async () => (await import('./gateway/command.js')).gatewayCommandModule,
  },
  tune: {
    summary: 'xPyD ratio tuning: topologies × load levels on simulators (or a real endpoint), plots and a recommendation.',
    load: async () => (await import('./tune/command.js')).tuneCommandModule,
  },
  dev: { summary: 'Local P/D stack on simulators (what `npm start` runs).', load: async () => (await import('./dev/command.js')).devCommandModule },
  loadgen: { summary: 'LLM load generator: TTFT/TPOT/ITL, throughput, goodput; inference-perf report.', load: async () => (await import('./loadgen/command.js')).loadgenCommandModule },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length)) + 2;
  const lines = [
    'Usage: pd-router <command> [flags]',
    '',
    'Prefill/Decode disaggregation router for vLLM.',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}${c.summary}`),
    '',
    'Run `pd-router <command> --help` for the flags of a command, `pd-router --version` for the version.',
  ];
  return lines.join('\n') + '\n';
}

async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    process.exitCode = name === undefined ? 2 : 0;
    return;
  }
  if (name === '--version' || name === 'version') {
    process.stdout.write(`pd-router ${packageVersion()}\n`);
    return;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`pd-router: unknown command "${name}"\n\n${usage()}`);
    process.exitCode = 2;
    return;
  }
  const code = await (await command.load()).run(rest);
  if (code >= 0) process.exitCode = code;
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`pd-router: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exitCode = 1;
});
