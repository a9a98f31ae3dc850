/** The EPP's per-request spans: which are built, given the sampler and the request's traceparent. */
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BasicTracerProvider,
  InMemorySpanExporter,
  ParentBasedSampler,
  SimpleSpanProcessor,
  type Sampler,
} from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { Tracing } from '../../src/common/tracing/index.js';
import type { ParsedRequest, ScheduledRequest } from '../../src/epp/director.js';
import { EppRequestTrace } from '../../src/epp/extproc/request-trace.js';

const TRACE = '0af7651916cd43dd8448eb211c80319c';
const PARENT = 'b7ad6b7169203331';

function spansOf(sampler: Sampler, followsParent: boolean, traceparent: string): string[] {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ sampler, spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tracing = new Tracing(provider.getTracer('test'), undefined, followsParent);
  const headers: Record<string, string> = { traceparent };
  const trace = new EppRequestTrace(tracing, headers, 'req-1');
  const request = { targetModel: 'm', model: 'm', priority: 0, headers: {} };
  // eslint-disable-next-line no-restricted-syntax -- the trace reads only these fields
  const parsed = { request } as unknown as ParsedRequest;
  // eslint-disable-next-line no-restricted-syntax -- the trace reads only these fields
  const scheduled = { ctx: { decision: undefined }, destination: '10.0.0.1:8000' } as unknown as ScheduledRequest;
  trace.scheduled(performance.now(), parsed, scheduled);
  trace.end('OK');
  return exporter.getFinishedSpans().map((span) => span.name);
}

describe('EppRequestTrace', () => {
  const all = ['llm_d.epp.prerequest.disaggregation', 'gateway.request_orchestration', 'gateway.request'];

  it('a sampled request gets its three spans; an unsampled one under a parent-based sampler none', () => {
    const parentBased = new ParentBasedSampler({ root: new AlwaysOnSampler() });
    expect(spansOf(parentBased, true, `00-${TRACE}-${PARENT}-01`)).toEqual(all);
    expect(spansOf(parentBased, true, `00-${TRACE}-${PARENT}-00`)).toEqual([]);
  });

  it('without a parent-based sampler the children are built even when the request span is not recorded', () => {
    // A sampler that drops the request span and keeps its children: only honoured when children are built.
    const dropsRequestSpan: Sampler = {
      shouldSample: (context, traceId, name) =>
        name === 'gateway.request' ? new AlwaysOffSampler().shouldSample() : new AlwaysOnSampler().shouldSample(),
      toString: () => 'drops gateway.request',
    };
    const children = ['llm_d.epp.prerequest.disaggregation', 'gateway.request_orchestration'];
    expect(spansOf(dropsRequestSpan, false, `00-${TRACE}-${PARENT}-01`)).toEqual(children);
    expect(spansOf(dropsRequestSpan, true, `00-${TRACE}-${PARENT}-01`)).toEqual([]);
  });
});
