/**
 * The EPP's spans for one ext_proc stream, named as llm-d-router ebab687 (pkg/epp/handlers/server.go,
 * pkg/epp/requestcontrol/director.go) and llm-d-inference-scheduler v0.7.1 (the disaggregation pre-request) name them:
 *
 *   gateway.request (server; continues the traceparent of the request headers Envoy forwarded)
 *   └── gateway.request_orchestration (parse, admission, scheduling)
 *       └── llm_d.epp.prerequest.disaggregation (the P/D decision: llm_d.epp.pd.*)
 *
 * As upstream injects the trace context into the header mutations, the request leaves with gateway.request's
 * traceparent, so the sidecar's span is its child. Built only when --tracing is on.
 */
import { PREFILLER_HOST_PORT } from '../../common/pd-contract.js';
import { failSpan, traceparentOf, type Span, type Tracing } from '../../common/tracing/index.js';
import type { ParsedRequest, ScheduledRequest } from '../director.js';
import type { InferenceError } from '../framework/errors.js';

export class EppRequestTrace {
  private readonly span: Span;

  /** Starts gateway.request and replaces the request's traceparent (in `headers`, echoed to Envoy) with its own. */
  constructor(
    private readonly tracing: Tracing,
    headers: Record<string, string>,
    requestId: string,
  ) {
    this.span = tracing.start(
      'gateway.request',
      headers.traceparent,
      'server',
      { 'gen_ai.request.id': requestId },
      {
        tracestate: headers.tracestate,
      },
    );
    headers.traceparent = traceparentOf(this.span);
  }

  /** The request was scheduled: its orchestration (from `startedAt`, a performance.now() reading) and its decision. */
  scheduled(startedAt: number, parsed: ParsedRequest, scheduled: ScheduledRequest): void {
    // Not sampled, with a parent-based sampler (90% of requests by default): the children would not be recorded.
    if (this.tracing.followsParent && !this.span.isRecording()) return;
    const request = parsed.request;
    const orchestration = this.tracing.start(
      'gateway.request_orchestration',
      this.span,
      'internal',
      {
        target_model: request.targetModel,
        request_prio: request.priority,
        'gen_ai.request.model': request.model,
      },
      { startTime: performance.timeOrigin + startedAt },
    );
    const decision = scheduled.ctx.decision;
    const prefill = request.headers[PREFILLER_HOST_PORT];
    const disaggregation = this.tracing.start('llm_d.epp.prerequest.disaggregation', orchestration, 'internal', {
      'gen_ai.request.model': request.targetModel,
      'llm_d.epp.pd.disaggregation_used': prefill !== undefined,
      ...(decision ? { 'llm_d.epp.pd.reason': decision.reason, 'pd_router.decision': decision.type } : {}),
    });
    if (prefill !== undefined) {
      const colon = prefill.lastIndexOf(':');
      disaggregation.setAttributes({
        'llm_d.epp.pd.prefill_pod_address': prefill.slice(0, colon).replace(/^\[|\]$/g, ''),
        'llm_d.epp.pd.prefill_pod_port': prefill.slice(colon + 1),
      });
    }
    disaggregation.end();
    orchestration.end();
    this.span.setAttribute('pd_router.destination', scheduled.destination);
  }

  /** The request was answered by the EPP itself (an immediate response). */
  rejected(err: InferenceError): void {
    this.span.setAttribute('http.response.status_code', err.status);
    failSpan(this.span, err.message);
  }

  /** The stream is over (`code`: its gRPC status name). */
  end(code: string): void {
    if (code !== 'OK') failSpan(this.span, `ext_proc stream ended: ${code}`);
    this.span.end();
  }
}
