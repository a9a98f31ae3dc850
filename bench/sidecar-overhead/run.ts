/**
 * bench/sidecar-overhead: what the sidecar adds to a P/D request.
 *
 * One zero-latency simulator process plays both prefiller and decoder. For each concurrency level, autocannon sends
 * the same P/D operation two ways, each for the same duration:
 *   direct   — as a client would without a sidecar: the prefill request (max_tokens 1, do_remote_decode) to the
 *              simulator, then the original request with the returned kv_transfer_params;
 *   sidecar  — the original request to the sidecar (its own process) with x-prefiller-host-port naming the simulator.
 * Latency is measured per operation (prefill + decode) in both modes; the added latency at a percentile is the
 * difference of the two distributions at that percentile. Throughput is operations per second. The sidecar's peak
 * RSS is read from /proc at the end.
 *
 * autocannon runs a closed loop: each connection sends its next operation as soon as the last one ends, so at 64 and
 * 256 connections the machine saturates and latency is mostly queueing. On a 2-core machine the simulator and
 * autocannon would share the CPU with the sidecar; with `--pin` (default when taskset exists) the simulator and
 * autocannon run on CPU 0 and the sidecar on CPU 1, as the sidecar has its own CPU request in a decode pod. The
 * sidecar's CPU time per operation (from /proc) is reported too: the overhead independent of contention.
 *
 * A closed-loop run measures a `duration`-second window on connections that are all up: it opens once every
 * connection has had its first answer (at least 1 s in, at most 15 s), and only operations started inside it count.
 * Opening 256 connections right after the previous run closed its 256 leaves some of them waiting 1–8 s for their
 * first answer (loopback connection setup colliding with the old connections); counted, they would be most of p99,
 * and while they wait the loop runs with fewer connections than it says. Direct and sidecar runs alternate
 * `--repeats` times with latencies pooled per mode, so a slow spell of a shared VM falls on both.
 *
 * Closed loops saturate a core and then measure queueing, not the sidecar: at 256 connections the latency of either
 * mode is 256 / throughput. So the same operations are also sent open loop: at a fixed rate (evenly spaced, paced by
 * our own timer, not autocannon's per-second bursts) over 256 keep-alive connections, with each operation's latency
 * counted from its scheduled start (no coordinated omission). That is the sidecar's added latency at a given load.
 *
 * Usage: node dist/bench/sidecar-overhead/run.js [--duration 10] [--repeats 3] [--concurrency 1,64,256]
 *        [--open-rates 500,1000|none] [--open-connections 256] [--out bench/results] [--proxy sidecar|minimal]
 *        [--sidecar-node-args "--max-old-space-size=96 --max-semi-space-size=8"] [--pin true|false]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { fmt, hasTaskset, percentile, pinSelf, startComponent, table } from '../common/processes.js';
import { arg, checkArgs, number, numbers, orExit } from '../common/args.js';
import { scrape, sumBy } from '../common/prometheus.js';
import { nixlPrefillBody } from '../../src/sidecar/index.js';
import { directPdRequests } from '../common/pd-client.js';

checkArgs(
  `Usage: node dist/bench/sidecar-overhead/run.js [--duration 10] [--repeats 3] [--concurrency 1,64,256]
       [--open-rates 500,1000|none] [--open-connections 256] [--out bench/results] [--proxy sidecar|minimal]
       [--sidecar-node-args "--max-old-space-size=96 --max-semi-space-size=8"] [--pin true|false]`,
  ['duration', 'repeats', 'concurrency', 'out', 'open-rates', 'open-connections', 'sidecar-node-args', 'pin', 'proxy'],
);
const DURATION = orExit(() => number('duration', arg('duration', '10'), 0.1, 3600));
/** Closed loop: seconds before the measured window (connection setup, JIT) and after it (its operations finish). */
const WARMUP_S = 1;
const WARMUP_MAX_S = 15;
const COOLDOWN_S = 1;
const REPEATS = orExit(() => number('repeats', arg('repeats', '3'), 1, 100));
const LEVELS = orExit(() => numbers('concurrency', arg('concurrency', '1,64,256'), 1, 4096));
const OUT = arg('out', 'bench/results');
/** `--open-rates none`: closed loop only. */
const OPEN_RATES = orExit(() =>
  arg('open-rates', '500,1000') === 'none' ? [] : numbers('open-rates', arg('open-rates', '500,1000'), 1, 100_000),
);
const OPEN_CONNECTIONS = orExit(() => number('open-connections', arg('open-connections', '256'), 1, 4096));
/**
 * Node flags for the sidecar process: the heap cap the Kustomize sidecar component sets through NODE_OPTIONS. Without
 * a cap V8 sizes its heap from the machine's memory and lets garbage accumulate (RSS ~300 MB here for a live set
 * under 60 MB).
 */
const SIDECAR_NODE_ARGS = arg('sidecar-node-args', '--max-old-space-size=96 --max-semi-space-size=8')
  .split(' ')
  .filter(Boolean);
const PIN = arg('pin', hasTaskset() ? 'true' : 'false') === 'true';
/**
 * What runs on CPU 1 in "sidecar" mode: pd-router's sidecar, or `minimal`, the reference proxy in minimal-proxy.ts that
 * does only the three HTTP exchanges and the JSON work (how much of the overhead is Node's HTTP stack itself).
 */
const PROXY = arg('proxy', 'sidecar');
if (PROXY !== 'sidecar' && PROXY !== 'minimal') throw new Error(`--proxy must be sidecar or minimal, not ${PROXY}`);

const PROMPT = Array.from({ length: 200 }, (_, i) => `word${i}`).join(' ');
const CLIENT_BODY = {
  model: 'bench-model',
  messages: [{ role: 'user', content: PROMPT }],
  max_tokens: 16,
  ignore_eos: true,
};
/** What the sidecar sends the prefiller for CLIENT_BODY (the direct mode sends the same). */
const PREFILL_BODY = JSON.stringify(nixlPrefillBody('chat', CLIENT_BODY));
const HEADERS = { 'content-type': 'application/json' };

interface ModeResult {
  mode: string;
  concurrency: number;
  /** Connections that had their first answer before the window opened. */
  connectionsUp: number;
  /** Operations in the measured window. */
  ops: number;
  /** Operations completed over the whole run, warm-up and cool-down included (for CPU per operation). */
  allOps: number;
  opsPerSec: number;
  p50: number;
  p99: number;
  errors: number;
  /** Sorted, in ms. */
  latencies: number[];
}

/**
 * One autocannon run of WARMUP_S + DURATION + COOLDOWN_S seconds on the same connections. Only operations that start
 * inside the DURATION window count: the first second holds connection setup (a server saturated by a closed loop
 * accepts 256 new connections slowly, and those first operations would dominate p99), the last lets the window's
 * operations finish.
 */
async function runMode(
  mode: 'direct' | 'sidecar',
  url: string,
  simHostPort: string,
  concurrency: number,
): Promise<ModeResult> {
  const latencies: number[] = [];
  let errors = 0;
  let allOps = 0;
  const now = () => performance.now();
  let windowStart = Infinity;
  let windowEnd = Infinity;
  const finish = (status: number, ctx: Record<string, unknown>) => {
    allOps++;
    const t0 = ctx.t0 as number;
    if (t0 < windowStart || t0 >= windowEnd) return;
    if (status !== 200) errors++;
    latencies.push(now() - t0);
  };
  const requests =
    mode === 'direct'
      ? directPdRequests({
          path: '/v1/chat/completions',
          headers: HEADERS,
          prefillBody: PREFILL_BODY,
          body: CLIENT_BODY,
          onStart: (ctx) => {
            ctx.t0 = now();
          },
          onEnd: (status, _text, ctx) => finish(status, ctx),
        })
      : [
          {
            method: 'POST',
            path: '/v1/chat/completions',
            headers: { ...HEADERS, 'x-prefiller-host-port': simHostPort },
            body: JSON.stringify(CLIENT_BODY),
            setupRequest: (req: Record<string, unknown>, ctx: Record<string, unknown>) => {
              ctx.t0 = now();
              return req;
            },
            onResponse: (status: number, _body: string, ctx: Record<string, unknown>) => finish(status, ctx),
          },
        ];
  // The window opens once every connection has had an answer (and at least WARMUP_S has passed), or after
  // WARMUP_MAX_S whatever the connections' state; the run stops COOLDOWN_S after the window closes.
  const start = now();
  const answered = new Set<unknown>();
  let connectionsUp = 0;
  const timers: NodeJS.Timeout[] = [];
  const instance = autocannon({
    url,
    connections: concurrency,
    duration: WARMUP_MAX_S + DURATION + COOLDOWN_S,
    requests: requests,
    timeout: 30,
  });
  const openWindow = () => {
    if (windowStart !== Infinity) return;
    windowStart = now();
    windowEnd = windowStart + DURATION * 1000;
    connectionsUp = answered.size;
    timers.push(setTimeout(() => instance.stop(), (DURATION + COOLDOWN_S) * 1000));
  };
  // autocannon's instance is also a promise of its result; on() returns the instance.
  void instance.on('response', (client: unknown) => {
    if (windowStart !== Infinity) return;
    answered.add(client);
    if (answered.size >= concurrency && now() - start >= WARMUP_S * 1000) openWindow();
  });
  timers.push(setTimeout(() => answered.size >= concurrency && openWindow(), WARMUP_S * 1000));
  timers.push(setTimeout(openWindow, WARMUP_MAX_S * 1000));
  const r = await instance;
  for (const t of timers) clearTimeout(t);
  if (connectionsUp < concurrency)
    process.stderr.write(
      `${mode} at ${concurrency}: only ${connectionsUp} connections had answered after ${WARMUP_MAX_S}s\n`,
    );
  latencies.sort((left, right) => left - right);
  return {
    mode,
    concurrency,
    connectionsUp,
    ops: latencies.length,
    allOps,
    opsPerSec: latencies.length / DURATION,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    errors: errors + r.errors + r.timeouts,
    latencies,
  };
}

/** One result from several runs of a mode: latencies pooled, operations summed, throughput averaged. */
function pooled(runs: ModeResult[]): ModeResult {
  const latencies = runs.flatMap((modeResult) => modeResult.latencies).sort((left, right) => left - right);
  const ops = runs.reduce((acc, modeResult) => acc + modeResult.ops, 0);
  return {
    mode: runs[0].mode,
    concurrency: runs[0].concurrency,
    connectionsUp: Math.min(...runs.map((modeResult) => modeResult.connectionsUp)),
    ops,
    allOps: runs.reduce((acc, modeResult) => acc + modeResult.allOps, 0),
    opsPerSec: ops / (DURATION * runs.length),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    errors: runs.reduce((acc, modeResult) => acc + modeResult.errors, 0),
    latencies,
  };
}

interface OpenLoopResult {
  mode: string;
  rate: number;
  ops: number;
  p50: number;
  p99: number;
  errors: number;
  /** Most operations in flight at once. */
  maxInFlight: number;
  /** Largest delay between an operation's scheduled start and its send (the driver's own lag). */
  maxSendLagMs: number;
}

/** Operations at a fixed rate over `connections` keep-alive connections; latency from each scheduled start. */
async function runOpenLoop(
  mode: 'direct' | 'sidecar',
  url: string,
  simHostPort: string,
  rate: number,
  connections: number,
): Promise<OpenLoopResult> {
  const pool = new Pool(url, { connections, pipelining: 1, keepAliveTimeout: 60_000 });
  const post = async (body: string, headers: Record<string, string>): Promise<{ status: number; text: string }> => {
    const r = await pool.request({
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { ...HEADERS, ...headers },
      body,
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
    return { status: r.statusCode, text: await r.body.text() };
  };
  const clientBody = JSON.stringify(CLIENT_BODY);
  const op = async (): Promise<boolean> => {
    if (mode === 'sidecar') return (await post(clientBody, { 'x-prefiller-host-port': simHostPort })).status === 200;
    const prefill = await post(PREFILL_BODY, {});
    if (prefill.status !== 200) return false;
    const kv = (JSON.parse(prefill.text) as { kv_transfer_params?: unknown }).kv_transfer_params;
    return (await post(JSON.stringify({ ...CLIENT_BODY, kv_transfer_params: kv }), {})).status === 200;
  };
  // Warm-up: open the connections and let the JIT settle, at the same rate.
  const drive = async (total: number, record: boolean) => {
    const latencies: number[] = [];
    let errors = 0;
    let inFlight = 0;
    let maxInFlight = 0;
    let maxSendLagMs = 0;
    let issued = 0;
    const gap = 1000 / rate;
    const t0 = performance.now() + 20;
    await new Promise<void>((resolve) => {
      const finishOne = () => {
        inFlight--;
        if (issued === total && inFlight === 0) resolve();
      };
      const tick = () => {
        const now = performance.now();
        while (issued < total && t0 + issued * gap <= now) {
          const scheduled = t0 + issued * gap;
          issued++;
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          maxSendLagMs = Math.max(maxSendLagMs, now - scheduled);
          op().then(
            (ok) => {
              if (!ok) errors++;
              else if (record) latencies.push(performance.now() - scheduled);
              finishOne();
            },
            () => {
              errors++;
              finishOne();
            },
          );
        }
        if (issued < total) setTimeout(tick, Math.max(0, t0 + issued * gap - performance.now()));
      };
      tick();
    });
    return { latencies, errors, maxInFlight, maxSendLagMs };
  };
  try {
    // Open every connection before the clock starts (one operation each, all at once): a connection opened later, in
    // a burst, would wait on a busy server's accept and count as latency.
    await Promise.all(Array.from({ length: connections }, () => op().catch(() => false)));
    await drive(Math.round(rate), false);
    const r = await drive(Math.round(rate * DURATION), true);
    r.latencies.sort((left, right) => left - right);
    return {
      mode,
      rate,
      ops: r.latencies.length,
      p50: percentile(r.latencies, 50),
      p99: percentile(r.latencies, 99),
      errors: r.errors,
      maxInFlight: r.maxInFlight,
      maxSendLagMs: r.maxSendLagMs,
    };
  } finally {
    await pool.close();
  }
}

/** Cumulative bucket counts of the sidecar's own-overhead histogram (all modes summed), by upper bound in seconds. */
async function overheadBuckets(sidecarUrl: string): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const [le, n] of sumBy(
    await scrape(`${sidecarUrl}/sidecar/metrics`),
    'pd_router_sidecar_overhead_seconds_bucket',
    'le',
  )) {
    out.set(le === '+Inf' ? Infinity : Number(le), n);
  }
  return out;
}

/** The bucket bound under which a share q of the observations between two scrapes fall (ms). */
function bucketQuantileMs(before: Map<number, number>, after: Map<number, number>, quantile: number): number {
  const bounds = [...after.keys()].sort((left, right) => left - right);
  const total = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  for (const b of bounds) if ((after.get(b) ?? 0) - (before.get(b) ?? 0) >= quantile * total) return b * 1000;
  return Infinity;
}

async function main(): Promise<void> {
  if (PIN) pinSelf('0');
  const sim = await startComponent(
    [
      'sim',
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--model',
      'bench-model',
      '--max-num-seqs',
      '4096',
      '--max-waiting-queue-length',
      '100000',
      '--kv-cache-size',
      '1000000',
      '--max-model-len',
      '100000',
      '--log-level',
      'info',
      '--record-requests',
      '0',
      '--seed',
      '1',
    ],
    /"url":"(http:[^"]+)".*simulator listening/,
    { cpus: PIN ? '0' : undefined },
  );
  const simHostPort = sim.url.replace('http://', '');
  const sidecar =
    PROXY === 'minimal'
      ? await startComponent(['--upstream', simHostPort], /"url":"(http:[^"]+)".*minimal proxy listening/, {
          script: fileURLToPath(new URL('./minimal-proxy.js', import.meta.url)),
          nodeArgs: SIDECAR_NODE_ARGS,
          cpus: PIN ? '1' : undefined,
        })
      : await startComponent(
          [
            'sidecar',
            '--host',
            '127.0.0.1',
            '--port',
            '0',
            '--secure-proxy=false',
            '--model-server-host',
            '127.0.0.1',
            '--model-server-port',
            simHostPort.split(':')[1],
            '--log-level',
            'info',
          ],
          /"url":"(http:[^"]+)".*sidecar listening/,
          { nodeArgs: SIDECAR_NODE_ARGS, cpus: PIN ? '1' : undefined },
        );
  const rows: Array<Record<string, number | string>> = [];
  const phase = async (count: number) => {
    // Direct and sidecar runs alternate REPEATS times and each mode's latencies are pooled, so a slow spell of the
    // machine (a shared VM) falls on both modes rather than on one.
    const directRuns: ModeResult[] = [];
    const viaRuns: ModeResult[] = [];
    let sidecarCpu = 0;
    for (let i = 0; i < REPEATS; i++) {
      directRuns.push(await runMode('direct', sim.url, simHostPort, count));
      const cpuBefore = sidecar.cpuSeconds() ?? NaN;
      viaRuns.push(await runMode('sidecar', sidecar.url, simHostPort, count));
      sidecarCpu += (sidecar.cpuSeconds() ?? NaN) - cpuBefore;
    }
    const direct = pooled(directRuns);
    const via = pooled(viaRuns);
    // CPU over the whole runs, warm-up and cool-down included, divided by every operation the sidecar served in them.
    const cpuPerOpUs = (sidecarCpu / via.allOps) * 1e6;
    const row = {
      concurrency: count,
      sidecarCpuPerOpUs: cpuPerOpUs,
      directP50: direct.p50,
      directP99: direct.p99,
      sidecarP50: via.p50,
      sidecarP99: via.p99,
      addedP50: via.p50 - direct.p50,
      addedP99: via.p99 - direct.p99,
      directOpsPerSec: direct.opsPerSec,
      sidecarOpsPerSec: via.opsPerSec,
      errors: direct.errors + via.errors,
    };
    rows.push(row);
    process.stderr.write(
      `concurrency ${count}: added p50 ${fmt(row.addedP50)} ms, p99 ${fmt(row.addedP99)} ms, ${fmt(via.opsPerSec, 0)} ops/s via sidecar, ${fmt(cpuPerOpUs, 0)} us CPU/op\n`,
    );
    return row;
  };
  const openRows: Array<{
    rate: number;
    direct: OpenLoopResult;
    via: OpenLoopResult;
    cpuPerOpUs: number;
    own: { p50: number; p99: number };
  }> = [];
  try {
    for (const c of LEVELS) await phase(c);
    for (const rate of OPEN_RATES) {
      const direct = await runOpenLoop('direct', sim.url, simHostPort, rate, OPEN_CONNECTIONS);
      const cpuBefore = sidecar.cpuSeconds() ?? NaN;
      const bucketsBefore = await overheadBuckets(sidecar.url);
      const via = await runOpenLoop('sidecar', sidecar.url, simHostPort, rate, OPEN_CONNECTIONS);
      const cpuPerOpUs =
        (((sidecar.cpuSeconds() ?? NaN) - cpuBefore) / (via.ops + via.errors + Math.round(rate))) * 1e6;
      const bucketsAfter = await overheadBuckets(sidecar.url);
      const own = {
        p50: bucketQuantileMs(bucketsBefore, bucketsAfter, 0.5),
        p99: bucketQuantileMs(bucketsBefore, bucketsAfter, 0.99),
      };
      openRows.push({ rate, direct, via, cpuPerOpUs, own });
      process.stderr.write(
        `open loop ${rate} ops/s over ${OPEN_CONNECTIONS} connections: added p50 ${fmt(via.p50 - direct.p50)} ms, p99 ${fmt(via.p99 - direct.p99)} ms (direct ${fmt(direct.p50)}/${fmt(direct.p99)}, sidecar ${fmt(via.p50)}/${fmt(via.p99)}), own share p50 ≤ ${fmt(own.p50)} ms p99 ≤ ${fmt(own.p99)} ms, ${fmt(cpuPerOpUs, 0)} us CPU/op\n`,
      );
    }
  } finally {
    const rss = sidecar.peakRssBytes();
    await sidecar.stop();
    await sim.stop();
    const md = [
      PROXY === 'minimal'
        ? `# Minimal proxy overhead, the reference for the sidecar (${new Date().toISOString()})`
        : `# Sidecar overhead (${new Date().toISOString()})`,
      '',
      `Command: \`node dist/bench/sidecar-overhead/run.js --duration ${DURATION} --repeats ${REPEATS} --concurrency ${LEVELS.join(',')} --open-rates ${OPEN_RATES.join(',') || 'none'}${PROXY === 'minimal' ? ' --proxy minimal' : ''}\`; ${PROXY === 'minimal' ? 'the "sidecar" columns are the minimal reference proxy (bench/sidecar-overhead/minimal-proxy.ts); ' : ''}closed loop: ${REPEATS} alternating runs per mode, latencies pooled, each run measured from the moment all its connections have answered once (connection setup not counted); zero-latency simulator, non-streamed chat completion, 200-word prompt, 16 output tokens; latency per P/D operation in ms; ${PIN ? 'simulator and autocannon pinned to CPU 0, sidecar to CPU 1' : 'no CPU pinning'}.`,
      '',
      table(
        [
          'concurrency',
          'direct p50',
          'direct p99',
          'sidecar p50',
          'sidecar p99',
          'added p50',
          'added p99',
          'direct ops/s',
          'sidecar ops/s',
          'sidecar CPU/op (µs)',
          'errors',
        ],
        rows.map((result) => [
          result.concurrency,
          fmt(result.directP50 as number),
          fmt(result.directP99 as number),
          fmt(result.sidecarP50 as number),
          fmt(result.sidecarP99 as number),
          fmt(result.addedP50 as number),
          fmt(result.addedP99 as number),
          fmt(result.directOpsPerSec as number, 0),
          fmt(result.sidecarOpsPerSec as number, 0),
          fmt(result.sidecarCpuPerOpUs as number, 0),
          result.errors,
        ]),
      ),
      '',
      `Open loop: operations at a fixed rate over ${OPEN_CONNECTIONS} keep-alive connections, latency from each operation's scheduled start (\`--open-rates ${OPEN_RATES.join(',')}\`):`,
      '',
      table(
        [
          'ops/s',
          'direct p50',
          'direct p99',
          'sidecar p50',
          'sidecar p99',
          'added p50',
          'added p99',
          "sidecar's own share p50 / p99 (≤ bucket)",
          'most in flight (direct / sidecar)',
          'driver lag max ms',
          'sidecar CPU/op (µs)',
          'errors',
        ],
        openRows.map((result) => [
          result.rate,
          fmt(result.direct.p50),
          fmt(result.direct.p99),
          fmt(result.via.p50),
          fmt(result.via.p99),
          fmt(result.via.p50 - result.direct.p50),
          fmt(result.via.p99 - result.direct.p99),
          `${fmt(result.own.p50)} / ${fmt(result.own.p99)}`,
          `${result.direct.maxInFlight} / ${result.via.maxInFlight}`,
          fmt(Math.max(result.direct.maxSendLagMs, result.via.maxSendLagMs), 1),
          fmt(result.cpuPerOpUs, 0),
          result.direct.errors + result.via.errors,
        ]),
      ),
      '',
      `Sidecar peak RSS: ${rss === undefined ? 'n/a' : `${fmt(rss / 1024 / 1024, 1)} MB`} (sidecar node flags: \`${SIDECAR_NODE_ARGS.join(' ')}\`)`,
    ].join('\n');
    mkdirSync(OUT, { recursive: true });
    const base = PROXY === 'minimal' ? 'minimal-proxy-overhead' : 'sidecar-overhead';
    writeFileSync(path.join(OUT, `${base}.md`), md + '\n');
    writeFileSync(
      path.join(OUT, `${base}.json`),
      JSON.stringify({ durationSeconds: DURATION, rows, openLoop: openRows, sidecarPeakRssBytes: rss }, null, 2) + '\n',
    );
    process.stdout.write(md + '\n');
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
