/**
 * Every header the sidecar reads as a routing instruction is in ROUTING_HEADERS (src/common/pd-contract.ts), the one
 * list the EPP strips from clients and the gateway removes when it skips a failed EPP. A header read the list does not
 * name is one a client can set to send the sidecar anywhere.
 *
 * The test finds the candidates itself: every `x-…` string literal in src/sidecar and src/common (read at test time,
 * so a header added to the code is tried without anyone listing it here), plus random lookalikes. Each is sent alone
 * and in random combinations, its value naming a loopback "trap" server; a trap the sidecar contacts names a header
 * that steered it, and that header must be in ROUTING_HEADERS. And no ROUTING_HEADERS header ever reaches the model
 * server, on any path.
 *
 * The traps and the model server here are small recording servers, not the simulator: the test needs the headers of
 * every request the model server gets (the simulator records inference routes only), and a prefiller at any port.
 */
import { readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROUTING_HEADERS, ROUTING_HEADER_SET } from '../../src/common/pd-contract.js';
import { sidecarConfig, startSidecar, type SidecarHandle } from '../../src/sidecar/index.js';
import { ROOT, waitFor } from '../helpers.js';

/** Every `x-…` header name written as a string literal in the sidecar and the shared code. */
function headerLiterals(): string[] {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) for (const m of readFileSync(p, 'utf8').matchAll(/['"`](x-[A-Za-z0-9_-]+)['"`]/g)) names.add(m[1]!.toLowerCase());
    }
  };
  walk(path.join(ROOT, 'src/sidecar'));
  walk(path.join(ROOT, 'src/common'));
  return [...names].sort();
}

interface Recorder {
  port: number;
  /**
   * Contacts since the last reset: connections accepted (even one that never carries a request) and requests (on a
   * connection the sidecar's pool kept from before).
   */
  contacts: number;
  requests: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders }>;
  close(): Promise<void>;
}

const COMPLETION = JSON.stringify({
  id: 'cmpl-1',
  object: 'text_completion',
  model: 'm',
  choices: [{ index: 0, text: 'ok', finish_reason: 'stop' }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2, prompt_tokens_details: { cached_tokens: 0 } },
});
/** What a NIXL prefiller answers, so a trap taken for one lets the request go on to decode. */
const PREFILL_ANSWER = JSON.stringify({
  ...JSON.parse(COMPLETION),
  kv_transfer_params: { do_remote_prefill: true, do_remote_decode: false, remote_engine_id: 'trap', remote_block_ids: [0], remote_host: '127.0.0.1', remote_port: 1 },
});

async function recorder(answer: string): Promise<Recorder> {
  const server = http.createServer((req, res) => {
    rec.contacts++;
    rec.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(answer));
  });
  server.on('connection', () => rec.contacts++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const rec: Recorder = {
    port: (server.address() as AddressInfo).port,
    contacts: 0,
    requests: [],
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
  return rec;
}

const CONNECTORS = ['nixlv2', 'sglang', 'shared-storage'] as const;
const TRAPS = 4;

let decode: Recorder;
let traps: Recorder[];
const sidecars = new Map<(typeof CONNECTORS)[number], SidecarHandle>();

beforeAll(async () => {
  decode = await recorder(COMPLETION);
  traps = await Promise.all(Array.from({ length: TRAPS }, () => recorder(PREFILL_ANSWER)));
  for (const kvConnector of CONNECTORS) {
    // No SSRF protection: a header that names a target is followed wherever it points, which is what the test looks for.
    sidecars.set(
      kvConnector,
      await startSidecar(
        sidecarConfig({ host: '127.0.0.1', port: 0, secureProxy: false, modelServerHost: '127.0.0.1', modelServerPort: decode.port, kvConnector, prefillTimeout: 5_000 }),
      ),
    );
  }
});

afterAll(async () => {
  await Promise.all([...sidecars.values()].map((handle) => handle.close()));
  await Promise.all([decode, ...traps].map((recorder) => recorder?.close()));
});

type Route = { method: 'GET' | 'POST'; path: string; body?: string };
const ROUTES: Route[] = [
  { method: 'POST', path: '/v1/completions', body: JSON.stringify({ model: 'm', prompt: 'x', max_tokens: 1 }) },
  { method: 'POST', path: '/v1/chat/completions', body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }], stream: true }) },
  { method: 'GET', path: '/v1/models' },
  { method: 'POST', path: '/tokenize', body: JSON.stringify({ model: 'm', prompt: 'x' }) },
];

/** The ways a host:port can be written in a header value. */
const VALUE_FORMS = [(quantile: number) => `127.0.0.1:${quantile}`, (quantile: number) => `http://127.0.0.1:${quantile}`, (quantile: number) => `localhost:${quantile}`, (quantile: number) => ` 127.0.0.1:${quantile}, 127.0.0.1:${quantile}`];

/**
 * Sends one request with `headers` (name -> trap index, value form) through `sidecar`, waits until the sidecar is
 * done with it, and checks: every trap contacted was named by a routing header; the model server got no routing
 * header. Returns what went wrong, or undefined.
 */
async function probe(sidecar: SidecarHandle, route: Route, headers: Array<{ name: string; trap: number; form: number }>): Promise<string | undefined> {
  for (const t of traps) t.contacts = 0;
  decode.requests.length = 0;
  const sent: Record<string, string> = { 'content-type': 'application/json' };
  for (const h of headers) sent[h.name] = VALUE_FORMS[h.form]!(traps[h.trap]!.port);
  const res = await fetch(`${sidecar.url}${route.path}`, { method: route.method, headers: sent, body: route.body, signal: AbortSignal.timeout(10_000) });
  await res.arrayBuffer();
  // Every leg has ended (an SGLang prefill runs beside decode and can end after the answer).
  await waitFor(async () => ((await sidecar.metrics.inflight.get()).values[0]?.value ?? 0) === 0, 10_000, 'the sidecar to finish the request');
  for (const [i, t] of traps.entries()) {
    if (t.contacts === 0) continue;
    const named = headers.filter((headers) => headers.trap === i).map((headers) => headers.name);
    if (!named.some((count) => ROUTING_HEADER_SET.has(count))) return `${route.method} ${route.path}: the sidecar contacted the host named by ${named.join(', ')}, which ROUTING_HEADERS does not list`;
  }
  for (const r of decode.requests) {
    const leaked = Object.keys(r.headers).filter((count) => ROUTING_HEADER_SET.has(count));
    if (leaked.length > 0) return `${route.method} ${route.path}: the model server received routing header(s) ${leaked.join(', ')}`;
  }
  return undefined;
}

/** A header name that looks like `base`: a character inserted, dropped or changed, a prefix or suffix, _ for -. */
function lookalike(base: string): fc.Arbitrary<string> {
  const ch = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-_'.split(''));
  const at = fc.integer({ min: 2, max: base.length - 1 });
  return fc
    .oneof(
      fc.tuple(at, ch).map(([i, c]) => base.slice(0, i) + c + base.slice(i)),
      at.map((i) => base.slice(0, i) + base.slice(i + 1)),
      fc.tuple(at, ch).map(([i, c]) => base.slice(0, i) + c + base.slice(i + 1)),
      fc.constantFrom('s', '-1', '-v2', '-url', '-host', '-port').map((text) => base + text),
      fc.constantFrom('x-', 'x-x-', 'x-llm-d-', 'x-gateway-').map((path) => path + base.slice(2)),
      fc.constant(base.replaceAll('-', '_')),
    )
    .filter((count) => /^[a-z0-9][a-z0-9_-]*$/.test(count));
}

describe('routing headers: ROUTING_HEADERS lists every header the sidecar follows', () => {
  const literals = headerLiterals();

  it('the scan finds the header names written in the code (the routing ones among them)', () => {
    for (const h of ROUTING_HEADERS) expect(literals).toContain(h);
    expect(literals).toContain('x-request-id');
  });

  it('the probe sees a contact: the prefill headers make every connector call the trap they name', async () => {
    for (const connector of CONNECTORS) {
      for (const name of ['x-prefiller-host-port', 'x-prefiller-url']) {
        expect(await probe(sidecars.get(connector)!, ROUTES[0]!, [{ name, trap: 1, form: 0 }])).toBeUndefined();
        expect(traps[1]!.contacts, `${connector}: ${name}`).toBeGreaterThan(0);
      }
    }
  });

  it('each header name in the code, alone, on every connector and route', async () => {
    const problems: string[] = [];
    for (const [i, name] of literals.entries()) {
      // Every name on every route, on one connector each (in turn); the combinations below mix the rest.
      const sidecar = sidecars.get(CONNECTORS[i % CONNECTORS.length]!)!;
      for (const route of ROUTES) {
        const problem = await probe(sidecar, route, [{ name, trap: 0, form: i % VALUE_FORMS.length }]);
        if (problem) problems.push(problem);
      }
    }
    expect(problems).toEqual([]);
  }, 120_000);

  it('random combinations of those names, lookalikes and random x- names, with values in every form', async () => {
    const name = fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(...literals) },
      { weight: 2, arbitrary: fc.constantFrom(...literals).chain(lookalike) },
      { weight: 1, arbitrary: fc.stringMatching(/^x-[a-z0-9-]{1,24}$/) },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...CONNECTORS),
        fc.constantFrom(...ROUTES),
        fc.uniqueArray(name, { minLength: 1, maxLength: TRAPS }),
        fc.array(fc.integer({ min: 0, max: VALUE_FORMS.length - 1 }), { minLength: TRAPS, maxLength: TRAPS }),
        async (connector, route, names, forms) => {
          const problem = await probe(
            sidecars.get(connector)!,
            route,
            names.map((count, i) => ({ name: count, trap: i, form: forms[i]! })),
          );
          expect(problem).toBeUndefined();
        },
      ),
      { numRuns: 60 },
    );
  }, 120_000);
});
