/**
 * The compatibility tables (src/<component>/upstream-flags.ts) against the real upstream programs: the flag names are
 * read from each binary's `--help` (pflag's usage lines), and
 * - every flag upstream lists is in the table for that release, so pd-router's binary accepts it;
 * - every flag the table gives that release is in upstream's --help, unless the table marks it deprecated (pflag
 *   hides deprecated flags from --help), so the table claims nothing upstream does not have.
 *
 * The binaries: llm-d-inference-sim v0.10.2 from the suite's toolchain (always); the EPP and sidecar of
 * llm-d-inference-scheduler v0.7.1 and llm-d-router ebab687, and GAIE v1.5.0's EPP, from
 * `.cache/interop/bin/<artifact>` or the environment variable named in the skip message (a path). Absent, those
 * tests are skipped with a message saying how to provide them.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { acceptedFlags, type CommandDefinition, type OptionsSpec } from '../../src/common/index.js';
import { eppCommand } from '../../src/epp/index.js';
import { sidecarCommand } from '../../src/sidecar/index.js';
import { simCommand } from '../../src/sim/index.js';
import { runProcess } from '../helpers.js';
import { BIN_DIR } from './toolchain.js';
import { interopEnv, skipInterop } from './upstream.js';

interface UpstreamBinary {
  /** The artifact name (the infra builders' name for it), also its file name under .cache/interop/bin. */
  artifact: string;
  command: CommandDefinition<OptionsSpec>;
  /** The release label in the component's compatibility table. */
  release: string;
  /** A path, when known without looking (the toolchain's simulator). */
  path?: () => string | undefined;
}

const BINARIES: UpstreamBinary[] = [
  { artifact: 'llm-d-inference-sim', command: simCommand as never, release: 'v0.10.2', path: toolchainSim },
  { artifact: 'llm-d-inference-scheduler-v0.7.1-epp', command: eppCommand as never, release: 'v0.7.1' },
  { artifact: 'llm-d-inference-scheduler-v0.7.1-pd-sidecar', command: sidecarCommand as never, release: 'v0.7.1' },
  { artifact: 'llm-d-router-ebab687-epp', command: eppCommand as never, release: 'ebab687' },
  { artifact: 'llm-d-router-ebab687-pd-sidecar', command: sidecarCommand as never, release: 'ebab687' },
  { artifact: 'gaie-v1.5.0-epp', command: eppCommand as never, release: 'gaie-v1.5.0' },
];

/** The simulator the suite's global setup installed, if it ran and Go was there. */
function toolchainSim(): string | undefined {
  try {
    return skipInterop() ? undefined : interopEnv().simBinary;
  } catch {
    return undefined; // run without the interop global setup
  }
}

/** `PD_INTEROP_UPSTREAM_LLM_D_ROUTER_EBAB687_EPP` for `llm-d-router-ebab687-epp`. */
export function envVarFor(artifact: string): string {
  return `PD_INTEROP_UPSTREAM_${artifact.replace(/[^A-Za-z0-9]/g, '_').toUpperCase()}`;
}

function locate(binary: UpstreamBinary): string | undefined {
  const candidates = [process.env[envVarFor(binary.artifact)], binary.path?.(), path.join(BIN_DIR, binary.artifact)];
  return candidates.find((path): path is string => path !== undefined && path !== '' && existsSync(path));
}

/**
 * Flag names from pflag's usage text (`  -v, --v int   ...`, `      --zap-devel   ...`). Go's flag package prints
 * `  -name value` instead; both are read. Returns name -> shorthand ('' when none).
 */
export function flagsFromHelp(help: string): Map<string, string> {
  const flags = new Map<string, string>();
  for (const line of help.split('\n')) {
    const pflag = /^\s+(?:-([A-Za-z0-9]), )?--([A-Za-z0-9][A-Za-z0-9_.-]*)/.exec(line);
    if (pflag) {
      flags.set(pflag[2], pflag[1] ?? '');
      continue;
    }
    const goflag = /^ {2}-([A-Za-z0-9][A-Za-z0-9_.-]*)(?:\s|$)/.exec(line);
    if (goflag) flags.set(goflag[1], '');
  }
  return flags;
}

describe('reading flag names from --help', () => {
  it('reads pflag and Go flag usage lines', () => {
    const help = [
      'Usage of /app/epp:',
      '      --cert-path string      The path to the certificate',
      '  -v, --v int                 Number for the log level verbosity. (default 2)',
      '      --zap-log-level level   Zap Level',
      '  -log_dir string',
      '    \tIf non-empty, write log files in this directory',
    ].join('\n');
    expect([...flagsFromHelp(help)]).toEqual([
      ['cert-path', ''],
      ['v', 'v'],
      ['zap-log-level', ''],
      ['log_dir', ''],
    ]);
  });
});

describe.each(BINARIES.map((binary) => [binary.artifact, binary] as const))(
  '%s --help against the compatibility table',
  (artifact, upstreamBinary) => {
    const binary = locate(upstreamBinary);
    const why = `skipped: no ${artifact} binary; build it (the interop builders) into ${path.join(BIN_DIR, artifact)} or set ${envVarFor(artifact)}=<path>`;
    if (!binary) process.stderr.write(`[interop] upstream-flags: ${why}\n`);

    it.skipIf(!binary)(
      binary
        ? `every flag of ${upstreamBinary.release} is accepted, and the table lists no flag ${upstreamBinary.release} lacks`
        : why,
      async () => {
        // pflag prints the usage on --help (to stderr) and exits 0 or 2 depending on the release; GAIE's runner logs a
        // build line first. Only the usage lines matter.
        const r = await runProcess(binary!, ['--help'], { timeoutMs: 30_000, env: { KUBECONFIG: '/nonexistent' } });
        const upstream = flagsFromHelp(r.output);
        expect(upstream.size, r.output.slice(-2000)).toBeGreaterThan(5);
        upstream.delete('help');
        const table = upstreamBinary.command.compat!;
        const accepted = acceptedFlags(upstreamBinary.command);

        const notAccepted = [...upstream.keys()].filter((field) => !accepted.has(field));
        expect(
          notAccepted,
          `pd-router ${upstreamBinary.command.name} rejects these ${upstreamBinary.release} flags`,
        ).toEqual([]);
        const notInTable = [...upstream.keys()].filter(
          (field) => !table.flags[field]?.releases.includes(upstreamBinary.release),
        );
        expect(notInTable, `the table does not give these flags to ${upstreamBinary.release}`).toEqual([]);

        const claimed = Object.entries(table.flags).filter(
          ([, entry]) => entry.releases.includes(upstreamBinary.release) && !entry.deprecated,
        );
        const absent = claimed.map(([flag]) => flag).filter((field) => !upstream.has(field));
        expect(absent, `the table gives ${upstreamBinary.release} flags its --help does not list`).toEqual([]);

        for (const [f, short] of upstream) if (short) expect(table.flags[f]?.shorthand, `-${short}`).toBe(short);
      },
    );
  },
);
