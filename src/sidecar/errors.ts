/**
 * Error answers in llm-d's sidecar shape (`{"object":"error",message,type,param,code}`), plus the SSE error event used
 * once a stream has started and the status can no longer change.
 */
import type { ServerResponse } from 'node:http';
import { flatError } from '../common/index.js';

export const DECODER_NOT_READY =
  'The decode node is not ready. Please check that the vLLM service is running and the port configuration is correct.';

const TYPE_BY_STATUS: Record<number, string> = {
  400: 'BadRequestError',
  403: 'Forbidden',
  413: 'RequestTooLarge',
  499: 'ClientClosedRequest',
  502: 'BadGateway',
  503: 'ServiceUnavailable',
  504: 'GatewayTimeout',
};

export function writeJsonError(res: ServerResponse, status: number, message: string, type = TYPE_BY_STATUS[status] ?? 'InternalServerError'): void {
  if (res.headersSent || res.destroyed) {
    if (!res.writableEnded) res.destroy();
    return;
  }
  const body = JSON.stringify(flatError(status, message, type));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export function writeText(res: ServerResponse, status: number, text: string): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The error event clients of OpenAI-style streams understand, then the stream's end marker. */
export function sseErrorEvent(status: number, message: string): string {
  return `data: ${JSON.stringify({ error: { message, type: TYPE_BY_STATUS[status] ?? 'InternalServerError', param: null, code: status } })}\n\ndata: [DONE]\n\n`;
}
