/**
 * Builders for the ext_proc messages the EPP sends, in the exact shapes llm-d's EPP produces (plus pd-router's
 * `remove_headers` for routing headers a client sent, and an explicit OVERWRITE_IF_EXISTS_OR_ADD on every set header,
 * so a smuggled value is replaced, never appended to).
 */
import { envoyStatusName, type HeaderValueOption, type ProcessingResponse, type ProtoStruct } from '../../common/envoy/ext-proc.js';
import type { InferenceError } from '../framework/errors.js';
import { DESTINATION_ENDPOINT, DESTINATION_METADATA_NAMESPACE, DROPPED_REASON } from '../../common/pd-contract.js';

/** llm-d's BodyByteLimit: streamed body chunks are at most this large. */
export const BODY_CHUNK_BYTES = 62_000;

export function setHeader(key: string, value: string): HeaderValueOption {
  return { header: { key, raw_value: Buffer.from(value, 'utf8') }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' };
}

export function destinationMetadata(destination: string): ProtoStruct {
  return {
    fields: {
      [DESTINATION_METADATA_NAMESPACE]: { structValue: { fields: { [DESTINATION_ENDPOINT]: { stringValue: destination } } } },
    },
  };
}

/** The routing reply to request headers: clear the route cache, set headers, remove the client's routing headers. */
export function requestHeadersResponse(setHeaders: HeaderValueOption[], removeHeaders: string[], destination: string): ProcessingResponse {
  return {
    request_headers: {
      response: {
        clear_route_cache: true,
        header_mutation: { set_headers: setHeaders, remove_headers: removeHeaders },
      },
    },
    dynamic_metadata: destinationMetadata(destination),
  };
}

/** A body as StreamedBodyResponse chunks of at most 62000 bytes; the last carries `endOfStream` (one empty chunk for an empty body). */
export function streamedBody(kind: 'request_body' | 'response_body', body: Buffer, endOfStream: boolean): ProcessingResponse[] {
  const out: ProcessingResponse[] = [];
  const chunks = Math.max(1, Math.ceil(body.length / BODY_CHUNK_BYTES));
  for (let i = 0; i < chunks; i++) {
    const chunk = body.subarray(i * BODY_CHUNK_BYTES, (i + 1) * BODY_CHUNK_BYTES);
    out.push({ [kind]: { response: { body_mutation: { streamed_response: { body: chunk, end_of_stream: endOfStream && i === chunks - 1 } } } } });
  }
  return out;
}

export function responseHeadersResponse(setHeaders: HeaderValueOption[]): ProcessingResponse {
  return { response_headers: { response: { header_mutation: { set_headers: setHeaders } } } };
}

/** The error reply: HTTP status, body `inference error: <Code> - <message>`, optional drop-reason header. */
export function immediateResponse(err: InferenceError): ProcessingResponse {
  return {
    immediate_response: {
      status: { code: envoyStatusName(err.status) },
      body: Buffer.from(err.body, 'utf8'),
      ...(err.dropReason ? { headers: { set_headers: [setHeader(DROPPED_REASON, err.dropReason)] } } : {}),
    },
  };
}

