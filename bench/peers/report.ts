/** bench/peers' results: the JSON record and the Markdown tables (a summary as in the README, then every figure). */
import path from 'node:path';
import { fmt, table } from '../common/processes.js';
import { REFERENCE, UPSTREAM_PINS, isOurs, modeLabel, type Mode, type UpstreamMode } from './build.js';
import type { EppResult } from './epp.js';
import type { ProfileSummary } from './profile.js';
import type { SidecarResult } from './sidecar.js';

export interface LoadAverage {
  start: number[];
  end: number[];
  /** 1-minute load average sampled every few seconds during the run. */
  min: number;
  max: number;
  mean: number;
  samples: number;
}

export interface PeersRecord {
  schema: 'pd-router/bench-peers/v1';
  startedAt: string;
  finishedAt: string;
  wallSeconds: number;
  command: string;
  smoke: boolean;
  machine: { cpus: number; cpuModel: string; node: string; platform: string; pinned: boolean };
  loadAverage: LoadAverage;
  reference: Mode;
  modes: Mode[];
  upstream: Record<string, { program: string; version: string; source: string }>;
  options: Record<string, unknown>;
  sidecar?: SidecarResult & { loadAverage: LoadAverage; nodeArgs: string[]; baseNodeArgs?: string[] };
  epp?: EppResult & { loadAverage: LoadAverage; nodeArgs: string[]; baseNodeArgs?: string[] };
  profiles?: Record<string, ProfileSummary[]>;
  /** Why the run failed, when it did (the figures gathered until then are kept). */
  error?: string;
}

const ms = (value: number | undefined) =>
  value === undefined || !Number.isFinite(value)
    ? 'n/a'
    : Math.abs(value) >= 10
      ? value.toFixed(0)
      : Math.abs(value) >= 1
        ? value.toFixed(1)
        : value.toFixed(2);
const mb = (bytes: number | undefined) => (bytes === undefined ? 'n/a' : `${(bytes / 1024 / 1024).toFixed(0)} MB`);
/** value ÷ reference, when both are positive (a ratio of a negative added latency means nothing). */
/** ", pd-router-base's with `...`" when the base mode ran with other Node flags. */
function baseArgsNote(rec: PeersRecord, args: string[], base: string[] | undefined): string {
  if (!rec.modes.includes('pd-router-base') || !base || base.join(' ') === args.join(' ')) return '';
  return `, pd-router-base's with \`${base.join(' ')}\``;
}

export function ratio(value: number | undefined, ref: number | undefined): number | undefined {
  if (
    value === undefined ||
    ref === undefined ||
    !Number.isFinite(value) ||
    !Number.isFinite(ref) ||
    value <= 0 ||
    ref <= 0
  )
    return undefined;
  return value / ref;
}
const x = (times: number | undefined) => (times === undefined ? '–' : `${times.toFixed(2)}×`);
/** Ratios to the reference, `a / b / c`, each as `x` prints it (`1.23×`, or `–` when either is not positive). */
export const ratios = (...pairs: Array<[number | undefined, number | undefined]>) =>
  pairs.map(([value, ref]) => x(ratio(value, ref))).join(' / ');

function loadLine(load: LoadAverage): string {
  const three = (values: number[]) => values.map((value) => value.toFixed(2)).join(' / ');
  return `load average ${three(load.start)} at the start, ${three(load.end)} at the end (1 / 5 / 15 min); 1-minute load during it ${load.min.toFixed(1)}–${load.max.toFixed(1)}, mean ${load.mean.toFixed(1)} (${load.samples} samples)`;
}

export function upstreamLine(modes: readonly Mode[]): string {
  return modes
    .filter((mode): mode is UpstreamMode => !isOurs(mode))
    .map((mode) => `${modeLabel(mode)} (\`${UPSTREAM_PINS[mode].source}\`)`)
    .join(', ');
}

/** The summary table (the README's): one column per program, ratios to llm-d-router in the same run. */
export function summaryTable(rec: PeersRecord): string {
  const modes = rec.modes;
  const header = [
    '',
    ...modes.map((mode) => (mode === REFERENCE ? `${modeLabel(mode)} (reference)` : modeLabel(mode))),
  ];
  const rows: string[][] = [];
  const withRatio = (
    vals: Partial<Record<Mode, [number | undefined, number | undefined]>>,
    unit: string,
    fmtv: (n: number | undefined) => string = ms,
  ) =>
    modes.map((mode) => {
      const v = vals[mode];
      if (!v) return 'n/a';
      const ref = vals[REFERENCE];
      const text = `${fmtv(v[0])}${v[1] === undefined ? '' : ` / ${fmtv(v[1])}`}${unit}`;
      if (mode === REFERENCE || !ref) return text;
      const r0 = ratio(v[0], ref[0]);
      const r1 = v[1] === undefined ? undefined : ratio(v[1], ref[1]);
      return `${text} (${x(r0)}${v[1] === undefined ? '' : ` / ${x(r1)}`})`;
    });
  if (rec.sidecar) {
    for (const row of rec.sidecar.rows) {
      const vals: Partial<Record<Mode, [number | undefined, number | undefined]>> = {};
      for (const m of modes) if (row.modes[m]) vals[m] = [row.modes[m].addedP50, row.modes[m].addedP99];
      rows.push([
        `sidecar added p50 / p99, ${row.concurrency} connection${row.concurrency > 1 ? 's' : ''}, ${row.stream ? 'streamed' : 'non-streamed'}`,
        ...withRatio(vals, ' ms'),
      ]);
    }
    const top = Math.max(...rec.sidecar.rows.map((row) => row.concurrency));
    for (const row of rec.sidecar.rows.filter((row) => row.concurrency === top)) {
      const vals: Partial<Record<Mode, [number | undefined, number | undefined]>> = {};
      for (const m of modes) if (row.modes[m]) vals[m] = [row.modes[m].opsPerSec, undefined];
      rows.push([
        `sidecar ops/s at ${top}, ${row.stream ? 'streamed' : 'non-streamed'} (direct: ${fmt(row.direct.opsPerSec, 0)})`,
        ...withRatio(vals, '', (value) => fmt(value ?? NaN, 0)),
      ]);
    }
    const vals: Partial<Record<Mode, [number | undefined, number | undefined]>> = {};
    for (const m of modes)
      if (rec.sidecar.peakRssBytes[m] !== undefined) vals[m] = [rec.sidecar.peakRssBytes[m], undefined];
    rows.push(['sidecar peak RSS', ...withRatio(vals, '', mb)]);
  }
  if (rec.epp) {
    const maxStreams = Math.max(...rec.epp.rows.map((row) => row.streams));
    for (const row of rec.epp.rows.filter((row) => row.streams === 1)) {
      const vals: Partial<Record<Mode, [number | undefined, number | undefined]>> = {};
      for (const m of modes) if (row.modes[m]) vals[m] = [row.modes[m].p50Ms, row.modes[m].p99Ms];
      rows.push([
        `EPP decision p50 / p99, 1 stream, ~${Math.round(row.tokens / 1024)}k-token prompts, ${row.endpoints} pods`,
        ...withRatio(vals, ' ms'),
      ]);
    }
    for (const row of rec.epp.rows.filter((row) => row.streams === maxStreams && maxStreams > 1)) {
      const vals: Partial<Record<Mode, [number | undefined, number | undefined]>> = {};
      for (const m of modes) if (row.modes[m]) vals[m] = [row.modes[m].perSecond, undefined];
      const cells = withRatio(vals, '', (value) => fmt(value ?? NaN, 0)).map((text, i) => {
        const cell = row.modes[modes[i]];
        return cell ? `${text}, p99 ${ms(cell.p99Ms)} ms` : text;
      });
      rows.push([
        `EPP decisions/s, ${maxStreams} streams, ~${Math.round(row.tokens / 1024)}k tokens, ${row.endpoints} pods`,
        ...cells,
      ]);
    }
    for (const [n, cpu] of Object.entries(rec.epp.idleCpu)) {
      const vals: Partial<Record<Mode, [number | undefined, number | undefined]>> = {};
      for (const m of modes) if (cpu[m] !== undefined) vals[m] = [cpu[m] * 100, undefined];
      rows.push([
        `EPP CPU while idle (scraping ${n} pods every 50 ms)`,
        ...withRatio(vals, '% of a core', (value) => fmt(value ?? NaN, 1)),
      ]);
    }
    for (const [n, rss] of Object.entries(rec.epp.peakRssBytes)) {
      const vals: Partial<Record<Mode, [number | undefined, number | undefined]>> = {};
      for (const m of modes) if (rss[m] !== undefined) vals[m] = [rss[m], undefined];
      rows.push([`EPP peak RSS, ${n} pods`, ...withRatio(vals, '', mb)]);
    }
  }
  return table(header, rows);
}

export function renderMarkdown(rec: PeersRecord): string {
  const out: string[] = [];
  out.push(`# pd-router side by side with llm-d's own programs (bench/peers)`);
  out.push('');
  const against = upstreamLine(rec.modes);
  out.push(
    `Measured ${rec.startedAt} (${rec.wallSeconds.toFixed(0)} s) ${against ? `against ${against}` : 'with pd-router alone (no upstream mode)'}.${rec.smoke ? ' **Smoke run: counts too small for the figures to mean anything.**' : ''}`,
  );
  out.push('');
  out.push(`Command: \`${rec.command}\``);
  out.push('');
  out.push(
    `Machine: ${rec.machine.cpus} × ${rec.machine.cpuModel}, Node ${rec.machine.node}, ${rec.machine.platform}; ${rec.machine.pinned ? 'component under test pinned to CPU 1, simulators and load clients to CPU 0 (taskset)' : 'no CPU pinning'}; ${loadLine(rec.loadAverage)}.`,
  );
  out.push('');
  if (rec.error) out.push(`**The run failed:** ${rec.error.split('\n')[0]}\n`);
  out.push(
    `Ratios (×) are to ${modeLabel(REFERENCE)} in the same run, when both figures are positive (below 1 is better for latency and memory, above 1 for throughput).`,
  );
  out.push('');
  out.push(summaryTable(rec));
  out.push('');
  if (rec.sidecar) {
    const s = rec.sidecar;
    out.push('## Sidecar');
    out.push('');
    out.push(
      `One zero-latency pd-router simulator (prefiller and decoder) on CPU 0; autocannon on CPU 0 sends a chat completion (200-word prompt, 16 output tokens) either directly as a P/D client would (prefill leg with max tokens 1 and do_remote_decode, then the decode leg with the returned kv_transfer_params) or through a sidecar with x-prefiller-host-port. Closed loop; ${s.rounds} round${s.rounds > 1 ? 's' : ''} alternating direct, ${rec.modes.map(modeLabel).join(', ')}, latencies pooled per mode; ${String(rec.options.sidecarDuration)} s measured per run once every connection has answered. Added = the sidecar's percentile − the direct client's (negative under saturation: the client then sends one request instead of two). pd-router's sidecar runs with \`${s.nodeArgs.join(' ')}\`${baseArgsNote(rec, s.nodeArgs, s.baseNodeArgs)}; ${loadLine(s.loadAverage)}.${s.complete ? '' : ' **Stopped early by --time-limit.**'}`,
    );
    out.push('');
    const header = [
      'body',
      'connections',
      'program',
      'added p50 ms',
      'added p99 ms',
      'p50 ms',
      'p99 ms',
      'ops/s',
      `× ${REFERENCE}: added p50 / p99 / ops/s`,
      'CPU/op µs',
      'errors',
    ];
    const rows: string[][] = [];
    for (const row of s.rows) {
      const b = row.stream ? 'streamed' : 'non-streamed';
      rows.push([
        b,
        String(row.concurrency),
        'direct',
        '',
        '',
        ms(row.direct.p50),
        ms(row.direct.p99),
        fmt(row.direct.opsPerSec, 0),
        '',
        '',
        String(row.direct.errors),
      ]);
      const ref = row.modes[REFERENCE];
      for (const m of rec.modes) {
        const c = row.modes[m];
        if (!c) continue;
        const rs =
          m === REFERENCE || !ref
            ? ''
            : ratios([c.addedP50, ref.addedP50], [c.addedP99, ref.addedP99], [c.opsPerSec, ref.opsPerSec]);
        rows.push([
          b,
          String(row.concurrency),
          modeLabel(m),
          ms(c.addedP50),
          ms(c.addedP99),
          ms(c.p50),
          ms(c.p99),
          fmt(c.opsPerSec, 0),
          rs,
          fmt(c.cpuPerOpUs ?? NaN, 0),
          `${c.errors}${c.errorSample ? ` (${c.errorSample.slice(0, 80)})` : ''}`,
        ]);
      }
    }
    out.push(table(header, rows));
    out.push('');
    out.push(
      `Peak RSS (VmHWM at the end): ${rec.modes.map((mode) => `${modeLabel(mode)} ${mb(s.peakRssBytes[mode])}`).join(', ')}.`,
    );
    out.push('');
  }
  if (rec.epp) {
    const e = rec.epp;
    out.push('## Endpoint Picker');
    out.push('');
    out.push(
      `Each EPP watches the same InferencePool through a real kube-apiserver (ServiceAccount with GAIE's chart RBAC); the pods (a quarter prefill, the rest decode) are HTTP servers on 127.0.0.x on CPU 0 answering the EPP's scrapes with a pd-router simulator's /metrics text (idle: empty queue, idle KV cache), rendered once (bench/peers/pods.ts). Configs: ${rec.modes.map((mode) => `${modeLabel(mode)}: \`${e.configs[mode] ?? '?'}\``).join('; ')}. The load client is bench/peers/extproc-load (Go, ${e.goApi}) on CPU 0: one FULL_DUPLEX_STREAMED ext_proc stream per request, headers then the body in 16 KiB chunks; decision latency = stream open to the last streamed body chunk back. Completions with prompts of the given size in estimated tokens (4 bytes each), three quarters one of 32 shared prefixes, the rest unique. The EPPs not under test are paused (SIGSTOP). ${e.rounds} round${e.rounds > 1 ? 's' : ''}, ${String(rec.options.eppDuration)} s measured per run after ${String(rec.options.eppWarmup)} s of warm-up, pooled; ${loadLine(e.loadAverage)}.${e.complete ? '' : ' **Stopped early by --time-limit.**'}`,
    );
    out.push('');
    const header = [
      'pods',
      'prompt tokens',
      'streams',
      'program',
      'p50 ms',
      'p99 ms',
      'decisions/s',
      `× ${REFERENCE}: p50 / p99 / decisions/s`,
      'own scheduling p50 / p99 ms (≤ bucket)',
      'CPU/decision µs',
      'with prefill',
      'errors',
    ];
    const rows: string[][] = [];
    for (const row of e.rows) {
      const ref = row.modes[REFERENCE];
      for (const m of rec.modes) {
        const c = row.modes[m];
        if (!c) continue;
        const rs =
          m === REFERENCE || !ref
            ? ''
            : ratios([c.p50Ms, ref.p50Ms], [c.p99Ms, ref.p99Ms], [c.perSecond, ref.perSecond]);
        rows.push([
          String(row.endpoints),
          String(row.tokens),
          String(row.streams),
          modeLabel(m),
          ms(c.p50Ms),
          ms(c.p99Ms),
          fmt(c.perSecond, 0),
          rs,
          `${ms(c.schedulerE2eP50Ms)} / ${ms(c.schedulerE2eP99Ms)}`,
          fmt(c.cpuPerDecisionUs, 0),
          `${(c.prefillShare * 100).toFixed(0)}%`,
          `${c.errors}${c.errorSamples.length ? ` (${c.errorSamples[0].slice(0, 80)})` : ''}`,
        ]);
      }
    }
    out.push(table(header, rows));
    out.push('');
    for (const [n, cpu] of Object.entries(e.idleCpu))
      out.push(
        `CPU while idle with ${n} pods (no requests for ${String(rec.options.eppIdle)} s after the warm-up; discovery and scraping): ${rec.modes.map((mode) => `${modeLabel(mode)} ${cpu[mode] === undefined ? 'n/a' : `${fmt(cpu[mode] * 100, 1)}%`}`).join(', ')} of a core.`,
      );
    for (const [n, rss] of Object.entries(e.peakRssBytes))
      out.push(
        `Peak RSS with ${n} pods (VmHWM at the end): ${rec.modes.map((mode) => `${modeLabel(mode)} ${mb(rss[mode])}`).join(', ')}.`,
      );
    out.push('');
    out.push(`pd-router's EPP runs with \`${e.nodeArgs.join(' ')}\`${baseArgsNote(rec, e.nodeArgs, e.baseNodeArgs)}.`);
    for (const u of e.unavailable) out.push(`\nNot measured: ${u.split('\n')[0]}`);
    out.push('');
  }
  if (rec.profiles) {
    out.push('## CPU profiles (--cpu-prof)');
    out.push('');
    for (const [what, list] of Object.entries(rec.profiles)) {
      for (const p of list) {
        out.push(
          `**${what}** (\`${path.relative(process.cwd(), p.file)}\`): ${p.busySamples} busy samples (${p.idleSamples} idle), ${((p.gcSamples / Math.max(1, p.busySamples)) * 100).toFixed(1)}% of them in garbage collection. Top functions by self samples:`,
        );
        out.push('');
        out.push(
          table(
            ['function', 'where', 'self samples', 'share of busy'],
            p.top.map((entry) => [entry.fn, entry.where, String(entry.samples), `${(entry.share * 100).toFixed(1)}%`]),
          ),
        );
        out.push('');
      }
    }
  }
  return out.join('\n') + '\n';
}
