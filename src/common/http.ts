/**
 * Shared fastify setup: request ids taken from x-request-id (or generated), no per-request info logging on the hot
 * path, and closing with a drain deadline.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import { LogController, type FastifyBaseLogger, type FastifyHttpOptions, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

export interface ServerBaseSettings {
  logger: Logger;
  /** Largest accepted request body in bytes. */
  bodyLimit: number;
}

export function requestIdOf(req: IncomingMessage): string {
  const h = req.headers['x-request-id'];
  const v = Array.isArray(h) ? h[0] : h;
  return v && v.length <= 256 ? v : randomUUID();
}

export function fastifyBaseOptions(s: ServerBaseSettings): FastifyHttpOptions<Server, FastifyBaseLogger> {
  return {
    loggerInstance: s.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'reqId' }),
    genReqId: requestIdOf,
    bodyLimit: s.bodyLimit,
    // LLM requests can stream for minutes; timeouts are per stage inside the handlers, not per socket.
    requestTimeout: 0,
    keepAliveTimeout: 300_000,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
  };
}

/** Listens and returns the bound port (useful with port 0 in tests). */
export async function listen(app: FastifyInstance, host: string, port: number): Promise<number> {
  await app.listen({ host, port });
  const addr = app.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('server has no TCP address');
  return addr.port;
}

/** Stops accepting, waits for in-flight requests up to the deadline, then closes what is left. */
export async function closeWithDeadline(app: FastifyInstance, deadlineMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'deadline'>((resolve) => {
    timer = setTimeout(() => resolve('deadline'), deadlineMs);
  });
  const closing = app.close().then(() => 'closed' as const);
  const first = await Promise.race([closing, deadline]);
  clearTimeout(timer);
  if (first === 'deadline') {
    app.log.warn({ deadlineMs }, 'drain deadline reached, closing remaining connections');
    app.server.closeAllConnections();
    await closing;
  }
}

/** Host formatting for URLs: IPv6 literals in brackets. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}
