#!/usr/bin/env node
/**
 * pd-router: one binary, one command per component. `pd-router <command> --help` lists a command's flags.
 * The components llm-d ships as images of their own also have a binary each (pd-router-epp, pd-router-sidecar,
 * pd-router-sim, in src/bin/) that takes the flags directly, as upstream's images are run.
 */
import { acceptedFlags, type CommandModule } from './common/index.js';
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
  const width = Math.max(...Object.keys(COMMANDS).map((text) => text.length)) + 2;
  const lines = [
    'Usage: pd-router <command> [flags]',
    '',
    'Prefill/Decode disaggregation router for vLLM.',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}${c.summary}`),
    '',
    'Run `pd-router <command> --help` for the flags of a command, `pd-router --version` for the version.',
    '',
    'Per-component binaries, taking the flags directly as llm-d\'s images do (`--port=8000 ...`, no command):',
    ...Object.entries(COMPONENT_BINARIES).map(([name, bin]) => `  ${bin.padEnd(20)}= pd-router ${name}`),
  ];
  return lines.join('\n') + '\n';
}

/** Commands with a binary (and an image) of their own, as llm-d ships them. */
const COMPONENT_BINARIES: Record<string, string> = { epp: 'pd-router-epp', sidecar: 'pd-router-sidecar', sim: 'pd-router-sim' };

/**
 * `pd-router --port=8000 ...`: the all-in-one image run with a manifest written for an upstream image, whose args are
 * flags only. Says which binary (or image) takes these flags, instead of "unknown command".
 */
async function flagsWithoutCommand(argv: string[]): Promise<string> {
  const given = argv.filter((left) => left.startsWith('-'));
  const fits: string[] = [];
  for (const [name, bin] of Object.entries(COMPONENT_BINARIES)) {
    const accepted = acceptedFlags((await COMMANDS[name]!.load()).definition);
    const takes = (arg: string) => {
      const flag = arg.replace(/^--?/, '').split('=')[0]!;
      // `-v4`: a one-letter shorthand with its value attached.
      return accepted.has(flag) || (!arg.startsWith('--') && accepted.has(flag[0]!));
    };
    if (given.every(takes)) fits.push(bin);
  }
  const joined = argv.join(' ');
  const shown = joined.length <= 72 ? joined : `${joined.slice(0, 68)} ...`;
  const lines = [
    `pd-router: "${argv[0]}" is a flag, but pd-router's first argument is a command: pd-router <command> [flags].`,
    'Upstream images run their program with flags only. Use the per-component binary or image instead (image',
    'ghcr.io/pd-router/pd-router-<component>, whose entrypoint is the binary), or put the command first:',
  ];
  const command = (bin: string) => Object.keys(COMPONENT_BINARIES).find((k) => COMPONENT_BINARIES[k] === bin);
  if (fits.length > 0) for (const bin of fits) lines.push(`  ${bin} ${shown}`, `  pd-router ${command(bin)} ${shown}`);
  else lines.push(`  ${Object.values(COMPONENT_BINARIES).join(', ')} (no single one takes all of these flags; see their --help)`);
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
  if (name.startsWith('-')) {
    process.stderr.write(await flagsWithoutCommand(argv));
    process.exitCode = 2;
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
