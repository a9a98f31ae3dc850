/**
 * GAIE's Grafana dashboard (tools/dashboards/inference_gateway.json, v1.4.0 and v1.5.0, vendored unchanged) against
 * pd-router, through a real Prometheus: the local stack (gateway, EPP, sidecar, simulators) serves real requests,
 * Prometheus scrapes the EPP and the simulators, and every query of the dashboard is evaluated. Each must return
 * data (a non-empty vector of numbers), except the rows of components pd-router does not have (Body-Based Router,
 * Flow Control), which are listed with the reason and checked to be absent from the EPP.
 *
 * pd-router's own dashboard's EPP panels are evaluated the same way with each single --metrics-family: their `or`
 * queries must answer from whichever family is served.
 *
 * Synchronised on events only: requests are awaited, the EPP's own /metrics is read until it has recorded every
 * response, and Prometheus's /api/v1/targets must report a scrape that began after that, twice (so every counter
 * and histogram has two samples with traffic in between and rate() has something to compute). Bounded throughout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { startDevStack, type DevStack } from '../../src/dev/stack.js';
import type { MetricsFamily } from '../../src/epp/metrics.js';
import { dashboardQueries, metricNames, type DashboardQuery } from '../deploy/grafana-queries.js';
import { ROOT, metricsText, waitFor } from '../helpers.js';
import { PROMETHEUS_MISSING, PrometheusPeer, prometheusBinary, type ScrapeJob } from './prometheus.js';

const prom = prometheusBinary();
if (!prom) process.stdout.write(`\n[interop] ${PROMETHEUS_MISSING}\n`);

const MODEL = 'sim-model';
const GAIE_DASHBOARDS = ['v1.4.0', 'v1.5.0'].map((value) => ({
  version: value,
  file: path.join(ROOT, `test/interop/gaie-dashboards/inference_gateway-${value}.json`),
}));
const PD_ROUTER_DASHBOARD = path.join(ROOT, 'deploy/grafana/pd-router-dashboard.json');

/** Dashboard rows pd-router cannot fill, by the metric names their queries read. */
const NOT_PD_ROUTER: Array<{ prefix: string; reason: string }> = [
  { prefix: 'bbr_', reason: 'Body-Based Router: a separate GAIE component (bbr), not part of an EPP' },
  {
    prefix: 'inference_extension_flow_control_',
    reason: 'flow control: pd-router has none (GAIE serves these only with flow control enabled)',
  },
];
const exclusion = (query: DashboardQuery) =>
  NOT_PD_ROUTER.find((item) => metricNames(query.expr).some((count) => count.startsWith(item.prefix)));

/** Grafana's variables as a query over the whole test would use them: every window spans all samples taken. */
function substitute(expr: string, windowS: number): string {
  const out = expr.replace(/\$\{?(__rate_interval|__interval|__range)\}?/g, `${windowS}s`);
  const unknown = /\$\{?\w+/.exec(out);
  if (unknown) throw new Error(`unknown Grafana variable ${unknown[0]} in ${expr}`);
  return out;
}

interface Scenario {
  stack: DevStack;
  prometheus: PrometheusPeer;
  startedAt: number;
  eppText: string;
}

/** One round of traffic through the gateway: decode-only and P/D, streamed and not, chat and completions, a 400. */
async function traffic(stack: DevStack, round: number): Promise<number> {
  const send = async (path: string, body: unknown, expectStatus: number) => {
    const res = await fetch(`${stack.gateway.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(20_000),
    });
    const text = await res.text();
    if (res.status !== expectStatus)
      throw new Error(`${path} answered ${res.status}, expected ${expectStatus}: ${text.slice(0, 500)}`);
  };
  const long = (tag: string) => Array.from({ length: 300 }, (_, i) => `${tag}-${round}-${i}`).join(' ');
  const chat = (content: string, extra: Record<string, unknown> = {}) => ({
    model: MODEL,
    messages: [{ role: 'user', content }],
    max_tokens: 4,
    ignore_eos: true,
    ...extra,
  });
  await send('/v1/chat/completions', chat('short question'), 200); // decode-only
  await send('/v1/chat/completions', chat(long('pd')), 200); // prefill-decode
  await send(
    '/v1/chat/completions',
    chat(long('stream'), { stream: true, stream_options: { include_usage: true } }),
    200,
  );
  await send(
    '/v1/completions',
    { model: MODEL, prompt: `complete this ${round}`, max_tokens: 4, ignore_eos: true },
    200,
  );
  await send('/v1/completions', { prompt: 'no model' }, 400); // rejected by the EPP: an error, not a request
  return 4;
}

/** Sum of every series of `name` in a text exposition. */
function total(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([^\s{]+)(?:\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && m[1] === name) sum += Number(m[2]);
  }
  return sum;
}

async function startScenario(family: MetricsFamily): Promise<Scenario> {
  const stack = await startDevStack({
    mode: 'in-process',
    basePort: 0,
    gatewayPort: 0,
    profile: 'zero',
    nonCachedTokens: 16,
    epp: { metricsFamily: family },
  });
  try {
    const target = (url: string) => url.replace(/^https?:\/\//, '');
    const jobs: ScrapeJob[] = [
      { job: 'epp', path: '/metrics', targets: [`127.0.0.1:${stack.epp.ports.metricsPort}`] },
      {
        job: 'vllm',
        path: '/metrics',
        targets: [
          ...stack.prefills.map((component) => target(component.url)),
          ...stack.decodes.map((decodeUnit) => target(decodeUnit.sim.url)),
        ],
      },
    ];
    const nTargets = 1 + stack.prefills.length + stack.decodes.length;
    const startedAt = Date.now();
    const prometheus = await PrometheusPeer.start(prom!.bin, jobs, { intervalS: 1 });
    try {
      await prometheus.scrapedAfter(startedAt, nTargets);
      const eppUrl = `http://127.0.0.1:${stack.epp.ports.metricsPort}`;
      // The EPP records a response when its end passes through ext_proc, which may follow the client's last byte.
      const durationCount =
        family === 'llm-d'
          ? 'llm_d_epp_request_duration_seconds_count'
          : 'inference_objective_request_duration_seconds_count';
      let done = 0;
      for (const round of [1, 2]) {
        done += await traffic(stack, round);
        await waitFor(
          async () => total(await metricsText(eppUrl), durationCount) >= done,
          10_000,
          `the EPP to record ${done} responses`,
        );
        await prometheus.scrapedAfter(Date.now(), nTargets);
      }
      return { stack, prometheus, startedAt, eppText: await metricsText(eppUrl) };
    } catch (e) {
      await prometheus.close();
      throw e;
    }
  } catch (e) {
    await stack.close();
    throw e;
  }
}

async function evaluate(scenario: Scenario, dashboardQuery: DashboardQuery): Promise<{ ok: boolean; detail: string }> {
  const now = Date.now();
  const windowS = Math.ceil((now - scenario.startedAt) / 1000) + 5;
  const result = await scenario.prometheus.query(substitute(dashboardQuery.expr, windowS), now);
  const values = result.map((sample) => Number(sample.value[1]));
  const ok = values.length > 0 && values.every(Number.isFinite);
  return {
    ok,
    detail: `${values.length} series [${values
      .slice(0, 4)
      .map((value) => +value.toPrecision(4))
      .join(', ')}${values.length > 4 ? ', ...' : ''}]`,
  };
}

const eppQueries = (file: string) =>
  dashboardQueries(file).filter((query) => metricNames(query.expr).some((count) => /^(llm_d_|inference_)/.test(count)));

describe.skipIf(!prom)(
  `GAIE's dashboard against pd-router (EPP --metrics-family gaie), through ${prom?.version ?? 'prometheus'}`,
  () => {
    let s: Scenario;
    beforeAll(async () => {
      s = await startScenario('gaie');
    }, 120_000);
    afterAll(async () => {
      await s?.prometheus.close();
      await s?.stack.close();
    });

    for (const { version, file } of GAIE_DASHBOARDS) {
      it(`inference_gateway.json ${version}: every EPP and vLLM query returns data; the rest are rows pd-router does not have`, async () => {
        const failed: string[] = [];
        const answered: string[] = [];
        const excluded: string[] = [];
        for (const q of dashboardQueries(file)) {
          const why = exclusion(q);
          if (why) {
            excluded.push(`${q.panel}: ${why.reason}`);
            // Not served by the EPP at all, so "no data" there is pd-router's true state, not a missing series.
            for (const n of metricNames(q.expr)) expect(s.eppText, n).not.toContain(n);
            continue;
          }
          const r = await evaluate(s, q);
          (r.ok ? answered : failed).push(`${q.panel} [${q.refId}] ${r.detail}: ${q.expr}`);
        }
        process.stdout.write(
          `[interop] GAIE dashboard ${version}: ${answered.length} queries returned data, ${excluded.length} not applicable\n${answered.map((left) => `  data: ${left}`).join('\n')}\n`,
        );
        expect(failed).toEqual([]);
        expect(answered.length).toBe(31); // 3 pool + 17 inference objective + 11 vLLM queries
      });
    }

    it("pd-router's own dashboard: its EPP panels answer from the GAIE family", async () => {
      const failed: string[] = [];
      for (const q of eppQueries(PD_ROUTER_DASHBOARD)) {
        const r = await evaluate(s, q);
        if (!r.ok) failed.push(`${q.panel} [${q.refId}] ${r.detail}: ${q.expr}`);
      }
      expect(failed).toEqual([]);
    });
  },
);

describe.skipIf(!prom)("pd-router's dashboard with --metrics-family llm-d, through Prometheus", () => {
  let s: Scenario;
  beforeAll(async () => {
    s = await startScenario('llm-d');
  }, 120_000);
  afterAll(async () => {
    await s?.prometheus.close();
    await s?.stack.close();
  });

  it('its EPP panels answer from the llm-d family, and no GAIE name is served', async () => {
    const failed: string[] = [];
    for (const q of eppQueries(PD_ROUTER_DASHBOARD)) {
      const r = await evaluate(s, q);
      if (!r.ok) failed.push(`${q.panel} [${q.refId}] ${r.detail}: ${q.expr}`);
    }
    expect(failed).toEqual([]);
    expect(await s.prometheus.query('inference_objective_request_total', Date.now())).toEqual([]);
    expect((await s.prometheus.query('llm_d_epp_request_total', Date.now())).length).toBeGreaterThan(0);
  });
});
