/**
 * Differential EPP decisions: pd-router's EPP and an upstream EPP (llm-d-inference-scheduler v0.7.1, llm-d-router
 * ebab687), each with llm-d's own P/D sample config of that release (deploy/config/pd-epp-config.yaml, unchanged),
 * watch the same InferencePool on kube-apiserver: one prefill pod and two decode pods on 127.0.0.x, each a pd-router
 * simulator whose queue the test controls (a decode simulator runs one request at a time with a ten-minute time to
 * first token; requests sent to it directly wait in its queue, and leave it when aborted). Both EPPs get the same
 * scripted requests over ext_proc from Envoy's generated Go client, and every decision is compared: the decode pick,
 * prefill or not, the prefill pick, the headers set and removed.
 *
 * Picks are determined by construction: in every phase one decode pod is clearly best (the other has a waiting queue,
 * or the best one holds the prompt's prefix), so no upstream picker breaks a tie at random. A phase starts when both
 * EPPs report the queues it needs (their own per-endpoint queue gauges, read from their /metrics).
 *
 * Where pd-router decides otherwise on purpose, the difference is asserted exactly (DIFFERENCES below) and listed in
 * the README's compatibility section.
 */
import { afterEach, expect, it } from 'vitest';
import { ROUTING_HEADERS } from '../../src/common/pd-contract.js';
import { simConfig, startSimulator, type SimulatorHandle } from '../../src/sim/index.js';
import { holdCompletions, metricsText } from '../helpers.js';
import type { KubeCluster } from './control-plane.js';
import { decisionOf, runExtProc, type Decision, type ExtProcExchange } from './extproc-driver.js';
import { eppPoolAccess, freePortOn } from './kube-fixtures.js';
import { UPSTREAM, UPSTREAM_RELEASES, startUpstreamEpp, upstreamFile, type UpstreamRelease } from './llm-d.js';
import { both, describeWith, need, needSharedControlPlane, openSharedCluster, type Requirement } from './need.js';
import { PeerSet, startPdRouterEpp } from './pd-router-peers.js';
import { interopEnv } from './upstream.js';

const cpReq = await needSharedControlPlane();
const clientReq: Requirement = interopEnv().extProcClient
  ? { ok: true, artifacts: {} }
  : { ok: false, reason: 'missing the ext_proc client (test/interop/extproc-client)' };
const eppReq = Object.fromEntries(
  await Promise.all(
    UPSTREAM_RELEASES.map(
      async (text) =>
        [text, both(both(cpReq, clientReq), await need(UPSTREAM[text].source, UPSTREAM[text].epp))] as const,
    ),
  ),
);

let cluster: KubeCluster | undefined;
openSharedCluster(cpReq, (opened) => (cluster = opened));

const peers = new PeerSet();
let sims: SimulatorHandle[] = [];
const loads: AbortController[] = [];
afterEach(async () => {
  for (const l of loads.splice(0)) l.abort();
  await peers.closeAll();
  await Promise.all(sims.map((handle) => handle.close()));
  sims = [];
});

const MODEL = 'sim-model';

/** `n` bytes of text starting with `tag` (ASCII, so bytes = characters). */
const text = (tag: string, count: number) =>
  (tag + ' ' + 'lorem ipsum dolor sit amet '.repeat(Math.ceil(count / 27) + 1)).slice(0, count);

/** A decision as pod names: "decode-0 + prefill-0" (P/D) or "decode-1" (decode-only). */
type Summary = string;

interface Step {
  name: string;
  path: '/v1/completions' | '/v1/chat/completions';
  body: Record<string, unknown>;
  extraHeaders?: Array<[string, string]>;
  /** pd-router's decision, which is llm-d-router ebab687's. */
  expect: Summary;
}

const completion = (name: string, prompt: string, expect: Summary, extraHeaders?: Array<[string, string]>): Step => ({
  name,
  path: '/v1/completions',
  body: { model: MODEL, prompt, max_tokens: 4 },
  extraHeaders,
  expect,
});
const chat = (name: string, content: string, expect: Summary): Step => ({
  name,
  path: '/v1/chat/completions',
  body: { model: MODEL, messages: [{ role: 'user', content }], max_tokens: 4 },
  expect,
});

// 2048 bytes: 512 estimate tokens, exactly 8 of llm-d-router's 64-token prefix blocks (32 of v0.7.1's 64-character ones).
const LONG_A = text('alpha', 2048);
const LONG_CHAT = text('chat', 2044); // "user" + 2044 bytes = 2048
const LONG_B = text('bravo', 2048);
const LONG_C = text('charlie', 2048);
const PD0 = 'decode-0 + prefill-0';

// The sample configs' nonCachedTokens is 16. pd-router counts llm-d-router's way: ceil(bytes / 4) of the completion
// prompt, or of the chat's role and content concatenated; hits are whole 64-token blocks, the last partial block
// included. Near the threshold: 60 bytes -> 15 tokens, 63 -> 16, 64 -> 16; chat "user" + 30 bytes -> 9, + 34 -> 10.
const PHASE_1: Step[] = [
  completion('long completion', LONG_A, PD0),
  completion('short completion, with smuggled routing headers', 'hi', 'decode-0', [
    ['x-prefiller-host-port', '10.9.9.9:1'],
    ['x-gateway-destination-endpoint', '10.9.9.9:2'],
  ]),
  completion('long completion repeated (cached on decode-0)', LONG_A, 'decode-0'),
  completion('completion of 60 bytes', text('sixty', 60), 'decode-0'),
  completion('completion of 63 bytes', text('sixtythree', 63), PD0),
  completion('completion of 64 bytes', text('sixtyfour', 64), PD0),
  chat('long chat', LONG_CHAT, PD0),
  chat('short chat', 'hi', 'decode-0'),
  chat('chat of 30 bytes', text('thirty', 30), 'decode-0'),
  chat('chat of 34 bytes', text('thirtyfour', 34), 'decode-0'),
  chat('long chat repeated', LONG_CHAT, 'decode-0'),
  completion('cached prefix + 60 bytes (15 uncached tokens)', LONG_A + text(' sixty', 60), 'decode-0'),
  completion('cached prefix + 64 bytes (16 uncached tokens)', LONG_A + text(' sixtyfour', 64), PD0),
];
const PHASE_2: Step[] = [
  completion('long completion repeated, its decode pod busy (the prefix outweighs the queue)', LONG_A, 'decode-0'),
  completion('new long completion', LONG_B, 'decode-1 + prefill-0'),
  chat('short chat again, its decode pod busy', 'hi', 'decode-0'),
];
const PHASE_3: Step[] = [
  completion('new long completion, no prefill pod', LONG_C, 'decode-1'),
  chat('long chat, no prefill pod', text('delta', 2044), 'decode-1'),
];

/**
 * Where the upstream EPP decides otherwise, and why; everything else must be equal. llm-d-router ebab687: none.
 * llm-d-inference-scheduler v0.7.1 counts and hashes differently; pd-router follows the newest upstream (ebab687):
 */
const DECISION_DIFFERENCES: Record<UpstreamRelease, Record<string, { upstream: Summary; why: string }>> = {
  ebab687: {},
  'v0.7.1': {
    'completion of 63 bytes': {
      upstream: 'decode-0',
      why: "v0.7.1's prefix-based-pd-decider counts floor(len(prompt) / 4) = 15 tokens for a completion, llm-d-router ceil(63 / 4) = 16",
    },
    'chat of 34 bytes': {
      upstream: PD0,
      why: 'v0.7.1 counts floor(len(json(messages)) / 4) = floor(64 / 4) = 16 tokens for a chat (the JSON\'s punctuation and keys included), llm-d-router ceil(len("user" + content) / 4) = 10',
    },
    'short chat again, its decode pod busy': {
      upstream: 'decode-1',
      why: "v0.7.1's prefix-cache-scorer (GAIE v1.4) hashes whole 64-character blocks only, so a 2-token prompt is never a hit and the idle pod wins on queue; llm-d-router hashes the last partial block too, so the busy pod that served it holds it and wins on prefix",
    },
  },
};

/** Go's json.Marshal of a decoded body (map keys sorted; no HTML characters in these bodies). */
function goJson(value: unknown): string {
  const sort = (item: unknown): unknown =>
    Array.isArray(item)
      ? item.map(sort)
      : item !== null && typeof item === 'object'
        ? Object.fromEntries(
            Object.keys(item)
              .sort()
              .map((k) => [k, sort((item as Record<string, unknown>)[k])]),
          )
        : item;
  return JSON.stringify(sort(value));
}

let requestSeq = 0;
function exchange(step: Step): ExtProcExchange {
  const body = JSON.stringify(step.body);
  return {
    name: step.name,
    requestHeaders: [
      [':method', 'POST'],
      [':scheme', 'http'],
      [':authority', 'gateway.example'],
      [':path', step.path],
      ['content-type', 'application/json'],
      ['content-length', String(Buffer.byteLength(body))],
      ['x-request-id', `diff-${++requestSeq}`],
      ...(step.extraHeaders ?? []),
    ],
    requestBodyChunks: [body],
    responseHeaders: [
      [':status', '200'],
      ['content-type', 'application/json'],
    ],
    responseBodyChunks: [
      JSON.stringify({
        id: 'cmpl-1',
        object: 'text_completion',
        model: MODEL,
        choices: [{ index: 0, text: 'ok', finish_reason: 'length' }],
        usage: { prompt_tokens: 10, completion_tokens: 1, total_tokens: 11 },
      }),
    ],
  };
}

/** Both EPPs decide the same steps, one step at a time for both (so their prefix indexes see the same history). */
async function decide(
  epps: Record<'pdRouter' | 'upstream', { grpcPort: number }>,
  steps: Step[],
): Promise<Array<{ step: string; request: ExtProcExchange; pdRouter: Decision; upstream: Decision }>> {
  const out = [];
  for (const s of steps) {
    const ex = exchange(s);
    const [p] = await runExtProc(`127.0.0.1:${epps.pdRouter.grpcPort}`, [ex]);
    const [u] = await runExtProc(`127.0.0.1:${epps.upstream.grpcPort}`, [ex]);
    peers.check();
    out.push({ step: s.name, request: ex, pdRouter: decisionOf(p), upstream: decisionOf(u) });
  }
  return out;
}

/** Per-endpoint queue sizes an EPP reports (either family), by endpoint label. */
function queueSizes(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(
    /^(?:inference_pool_per_pod_queue_size|llm_d_epp_per_endpoint_queue_size)\{([^}]*)\} (\S+)$/gm,
  )) {
    const label = /model_server_(?:pod|endpoint)="([^"]*)"/.exec(m[1])?.[1];
    if (label) out.set(label, Number(m[2]));
  }
  return out;
}

/** Waits until every EPP reports exactly these pods (by name) with these waiting queues. */
async function waitQueues(
  epps: Array<{ name: string; metricsPort: number }>,
  want: Record<string, number>,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const view = (query: Map<string, number>) =>
    Object.fromEntries(Object.keys(want).map((pod) => [pod, [...query].find(([k]) => k.startsWith(pod))?.[1]]));
  for (const e of epps) {
    for (;;) {
      peers.check();
      const q = queueSizes(await metricsText(`http://127.0.0.1:${e.metricsPort}`));
      const pods = new Set([...q.keys()].map((k) => k.replace(/-rank-\d+$/, '')));
      if (JSON.stringify(view(q)) === JSON.stringify(want) && pods.size === Object.keys(want).length) break;
      if (Date.now() > deadline)
        throw new Error(
          `${e.name}: queues ${JSON.stringify(Object.fromEntries(q))}, want ${JSON.stringify(want)}\n${peers.tails()}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** Sends `count` requests straight to the simulator: one runs (ten-minute TTFT), the rest wait in its queue. */
function load(sim: SimulatorHandle, count: number): AbortController {
  const held = holdCompletions(sim.url, MODEL, count);
  loads.push(held);
  return held;
}

for (const release of UPSTREAM_RELEASES) {
  const name = UPSTREAM[release].name;
  describeWith(eppReq[release], `EPP decisions: pd-router and ${name}, its pd-epp-config.yaml, the same pods`, () => {
    it('the same decode pick, prefill decision, prefill pick and headers for every scripted request, but for the listed differences', async () => {
      const addresses =
        release === 'ebab687' ? ['127.0.0.71', '127.0.0.72', '127.0.0.73'] : ['127.0.0.75', '127.0.0.76', '127.0.0.77'];
      const port = await freePortOn(addresses);
      const start = (host: string, engineId: string, busy: boolean) =>
        startSimulator(
          simConfig({
            host,
            port,
            model: [MODEL],
            mode: 'echo',
            engineId,
            seed: 1,
            ...(busy ? { maxNumSeqs: 1, timeToFirstToken: 600_000 } : {}),
          }),
        );
      const [prefill, decode0, decode1] = [
        await start(addresses[0], 'prefill-0', false),
        await start(addresses[1], 'decode-0', true),
        await start(addresses[2], 'decode-1', true),
      ];
      sims = [prefill, decode0, decode1];
      const ns = await cluster!.createNamespace(`diff-epp-${release.replace(/\W/g, '')}`);
      const pods = [
        ['prefill-0', 'prefill', addresses[0]],
        ['decode-0', 'decode', addresses[1]],
        ['decode-1', 'decode', addresses[2]],
      ] as const;
      for (const [pod, role, ip] of pods)
        await cluster!.createPod(ns, pod, { labels: { app: 'vllm-pd', 'llm-d.ai/role': role }, ip });
      const kubeconfig = await eppPoolAccess(cluster!, ns, port);
      const configFile = await upstreamFile(release, 'deploy/config/pd-epp-config.yaml');
      const upstream = peers.add(
        await startUpstreamEpp(release, {
          kubeconfig,
          poolName: 'pool',
          poolNamespace: ns,
          configFile,
        }),
      );
      const pdRouter = peers.add(
        await startPdRouterEpp({ configFile, discovery: { kubeconfig, poolName: 'pool', poolNamespace: ns } }),
      );
      const epps = { pdRouter, upstream };
      const watchers = [
        { name: 'pd-router', metricsPort: pdRouter.metricsPort },
        { name, metricsPort: upstream.metricsPort },
      ];

      // Phase 1: decode-1 busy (two waiting), decode-0 idle.
      load(decode1, 3);
      await waitQueues(watchers, { 'prefill-0': 0, 'decode-0': 0, 'decode-1': 2 });
      const phase1 = await decide(epps, PHASE_1);
      // Phase 2: decode-0 busy, decode-1 idle.
      loads.shift()!.abort();
      load(decode0, 3);
      await waitQueues(watchers, { 'prefill-0': 0, 'decode-0': 2, 'decode-1': 0 });
      const phase2 = await decide(epps, PHASE_2);
      // Phase 3: the prefill pod is gone.
      await cluster!.deletePod(ns, 'prefill-0');
      await waitQueues(watchers, { 'decode-0': 2, 'decode-1': 0 });
      const phase3 = await decide(epps, PHASE_3);

      const podOf = (addr: string | undefined) =>
        addr === undefined ? undefined : (pods.find(([, , ip]) => `${ip}:${port}` === addr)?.[0] ?? addr);
      const summary = (decision: Decision): Summary =>
        decision.immediate
          ? `immediate ${decision.immediate.status}`
          : `${podOf(decision.decode)}${decision.prefill ? ` + ${podOf(decision.prefill)}` : ''}`;
      const steps = [...PHASE_1, ...PHASE_2, ...PHASE_3];
      const decided = [...phase1, ...phase2, ...phase3];
      const diffs = DECISION_DIFFERENCES[release];
      expect(Object.keys(diffs).filter((k) => !steps.some((step) => step.name === k))).toEqual([]);
      for (const [i, step] of steps.entries()) {
        const { pdRouter: p, upstream: u, request: req } = decided[i];
        const where = `${step.name}\npd-router: ${JSON.stringify(p)}\n${name}: ${JSON.stringify(u)}`;
        expect([p.problems, u.problems], where).toEqual([[], []]);
        // The decision: pd-router's is llm-d-router's; the upstream's the same unless listed.
        expect(summary(p), where).toBe(step.expect);
        expect(summary(u), `${where}\n${diffs[step.name]?.why ?? ''}`).toBe(diffs[step.name]?.upstream ?? step.expect);
        // Headers set: the same, but the upstream EPPs echo the request's pseudo-headers (Envoy ignores :method,
        // :scheme and :authority and re-applies the same :path) and v0.7.1 adds a W3C traceparent of its own.
        const pseudo = Object.fromEntries(req.requestHeaders.filter(([k]) => k.startsWith(':')));
        expect(Object.fromEntries(Object.entries(u.set).filter(([k]) => k.startsWith(':'))), where).toEqual(pseudo);
        const { traceparent, ...upstreamSet } = Object.fromEntries(
          Object.entries(u.set).filter(([k]) => !k.startsWith(':')),
        );
        if (release === 'v0.7.1') expect(traceparent, where).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
        else expect(traceparent, where).toBeUndefined();
        expect(
          Object.keys(p.set).filter((k) => k.startsWith(':') || k === 'traceparent'),
          where,
        ).toEqual([]);
        const routing = (set: Record<string, string>) => {
          const { ['x-gateway-destination-endpoint']: _d, ['x-prefiller-host-port']: _p, ...rest } = set;
          return rest;
        };
        expect(routing(p.set), where).toEqual(routing(upstreamSet));
        expect([p.decode, p.prefill], where).toEqual([
          p.set['x-gateway-destination-endpoint'],
          p.set['x-prefiller-host-port'],
        ]);
        expect(p.set['x-request-id'], where).toBe(req.requestHeaders.find(([k]) => k === 'x-request-id')![1]);
        // Headers removed: upstream none; pd-router every routing header it did not set, so a client's own never
        // reaches the sidecar (Envoy forwards a request header the EPP neither sets nor removes).
        expect(u.removed, where).toEqual([]);
        expect(p.removed, where).toEqual(ROUTING_HEADERS.filter((host) => !(host in p.set)).sort());
        // The body: pd-router (and llm-d-router) send the client's bytes on; v0.7.1 re-encodes it from a Go map (keys
        // sorted): the same JSON value.
        const body = req.requestBodyChunks.join('');
        expect(p.body, where).toBe(body);
        expect(u.body, where).toBe(release === 'v0.7.1' ? goJson(JSON.parse(body)) : body);
      }
      // The client's own x-prefiller-host-port on a decode-only decision: the upstream EPPs leave it on the request
      // (neither set nor removed, so Envoy forwards it and the sidecar would prefill there); pd-router removes it.
      const smuggled = decided[1];
      expect([
        smuggled.upstream.set['x-prefiller-host-port'],
        smuggled.upstream.removed.includes('x-prefiller-host-port'),
      ]).toEqual([undefined, false]);
      expect(smuggled.pdRouter.removed).toContain('x-prefiller-host-port');
    }, 240_000);
  });
}
