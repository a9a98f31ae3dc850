/**
 * upstream.ts on its own: which client headers an upstream leg carries (forwardHeaders), which answer headers go back
 * to the client (responseHeaders), and how the prefill header's candidates are read (prefillCandidates). The
 * whole-sidecar tests (routing-headers.test.ts) check the same over HTTP; these pin each rule.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import { ROUTING_HEADERS } from '../../src/common/pd-contract.js';
import { forwardHeaders, newTraceparent, prefillCandidates, responseHeaders } from '../../src/sidecar/upstream.js';

const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/;

describe('forwardHeaders', () => {
  const base = { requestId: 'req-1', dropHost: true };

  it('keeps end-to-end headers and drops hop-by-hop ones, and those the Connection header names', () => {
    const incoming: IncomingHttpHeaders = {
      'content-type': 'application/json',
      authorization: 'Bearer t',
      accept: 'text/event-stream',
      connection: 'keep-alive, x-private-hop',
      'x-private-hop': 'secret',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      upgrade: 'h2c',
      te: 'trailers',
    };
    const out = forwardHeaders(incoming, base);
    expect(out['content-type']).toBe('application/json');
    expect(out.authorization).toBe('Bearer t');
    expect(out.accept).toBe('text/event-stream');
    for (const name of ['connection', 'x-private-hop', 'keep-alive', 'transfer-encoding', 'upgrade', 'te'])
      expect(out, name).not.toHaveProperty(name);
  });

  it('never forwards a routing header, whoever sent it', () => {
    const incoming: IncomingHttpHeaders = Object.fromEntries(ROUTING_HEADERS.map((name) => [name, '10.6.6.6:1']));
    const out = forwardHeaders({ ...incoming, 'x-kept': 'yes' }, base);
    for (const name of ROUTING_HEADERS) expect(out, name).not.toHaveProperty(name);
    expect(out['x-kept']).toBe('yes');
  });

  it('sets one x-request-id, and drops content-length and Expect (the sidecar sends the body whole)', () => {
    const out = forwardHeaders({ 'x-request-id': 'client-id', 'content-length': '12', expect: '100-continue' }, base);
    expect(out['x-request-id']).toBe('req-1');
    expect(out).not.toHaveProperty('content-length');
    expect(out).not.toHaveProperty('expect');
  });

  it('keeps the client traceparent; otherwise uses the given one, else makes one', () => {
    expect(forwardHeaders({ traceparent: '00-aa-bb-01' }, { ...base, traceparent: '00-cc-dd-01' }).traceparent).toBe(
      '00-aa-bb-01',
    );
    expect(forwardHeaders({}, { ...base, traceparent: '00-cc-dd-01' }).traceparent).toBe('00-cc-dd-01');
    expect(forwardHeaders({}, base).traceparent).toMatch(TRACEPARENT);
  });

  it('appends the client address to x-forwarded-for, or passes the header on when there is no address', () => {
    expect(forwardHeaders({}, { ...base, clientAddress: '10.0.0.9' })['x-forwarded-for']).toBe('10.0.0.9');
    expect(
      forwardHeaders({ 'x-forwarded-for': '1.1.1.1' }, { ...base, clientAddress: '10.0.0.9' })['x-forwarded-for'],
    ).toBe('1.1.1.1, 10.0.0.9');
    expect(forwardHeaders({ 'x-forwarded-for': '1.1.1.1' }, base)['x-forwarded-for']).toBe('1.1.1.1');
  });

  it('drops Host for a leg to another server, keeps it for passthrough', () => {
    expect(forwardHeaders({ host: 'gw.example' }, base)).not.toHaveProperty('host');
    expect(forwardHeaders({ host: 'gw.example' }, { ...base, dropHost: false }).host).toBe('gw.example');
  });

  it('keeps repeated headers as their list', () => {
    expect(forwardHeaders({ 'x-multi': ['a', 'b'] }, base)['x-multi']).toEqual(['a', 'b']);
  });
});

describe('newTraceparent', () => {
  it('is a valid W3C trace context, different each time', () => {
    const seen = new Set(Array.from({ length: 500 }, () => newTraceparent()));
    expect(seen.size).toBe(500);
    for (const value of seen) expect(value).toMatch(TRACEPARENT);
  });
});

describe('responseHeaders', () => {
  it('drops hop-by-hop headers; drops content-length only when the body is rewritten', () => {
    const headers = {
      'content-type': 'application/json',
      'content-length': '10',
      connection: 'close',
      'transfer-encoding': 'chunked',
      'x-vllm': '1',
    };
    expect(responseHeaders(headers, false)).toEqual({
      'content-type': 'application/json',
      'content-length': '10',
      'x-vllm': '1',
    });
    expect(responseHeaders(headers, true)).toEqual({ 'content-type': 'application/json', 'x-vllm': '1' });
  });
});

describe('prefillCandidates', () => {
  it('reads one host, a comma list in one value, or several values', () => {
    expect(prefillCandidates(undefined)).toEqual([]);
    expect(prefillCandidates(' ')).toEqual([]);
    expect(prefillCandidates('10.0.0.1:8000')).toEqual(['10.0.0.1:8000']);
    expect(prefillCandidates('10.0.0.1:8000, 10.0.0.2:8000,')).toEqual(['10.0.0.1:8000', '10.0.0.2:8000']);
    expect(prefillCandidates(['10.0.0.1:8000', ' 10.0.0.2:8000 '])).toEqual(['10.0.0.1:8000', '10.0.0.2:8000']);
  });
});
