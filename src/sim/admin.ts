/**
 * Runtime administration, for tests and tuning runs:
 * - GET /admin/config: the running configuration (flag names as keys, latencies as Go duration strings);
 * - POST /admin/config: change latencies and the calculator at runtime, as upstream allows (flat keys or nested under
 *   "latencies"; durations as strings or integer nanoseconds), plus pd-router's fault switches "hang",
 *   "drop-connections", "return-error" (a status code, 0 = off) and "return-error-count" (only the next N requests);
 * - GET /admin/requests, DELETE /admin/requests: the recent requests this instance received (pd-router), so a test can
 *   check exactly what a router sent.
 */
import type { FastifyInstance } from 'fastify';
import { formatDuration, openAIError, parseDuration } from '../common/index.js';
import type { SimConfig } from './options.js';
import type { SimEngine } from './sim-engine.js';

const LATENCY_KEYS = {
  'time-to-first-token': 'timeToFirstToken',
  'time-to-first-token-std-dev': 'timeToFirstTokenStdDev',
  'inter-token-latency': 'interTokenLatency',
  'inter-token-latency-std-dev': 'interTokenLatencyStdDev',
  'prefill-overhead': 'prefillOverhead',
  'prefill-time-per-token': 'prefillTimePerToken',
  'prefill-time-std-dev': 'prefillTimeStdDev',
  'kv-cache-transfer-latency': 'kvCacheTransferLatency',
  'kv-cache-transfer-latency-std-dev': 'kvCacheTransferLatencyStdDev',
  'kv-cache-transfer-time-per-token': 'kvCacheTransferTimePerToken',
  'kv-cache-transfer-time-std-dev': 'kvCacheTransferTimeStdDev',
} as const satisfies Record<string, keyof SimConfig>;

type LatencyKey = keyof typeof LATENCY_KEYS;

class AdminError extends Error {}

function latencyValue(key: string, value: unknown): number {
  // Upstream marshals Go durations: strings like "250ms", or integer nanoseconds.
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new AdminError(`field "${key}": duration must be non-negative`);
    return value / 1e6;
  }
  if (typeof value !== 'string') throw new AdminError(`field "${key}": expected a duration string or integer nanoseconds`);
  try {
    return parseDuration(value);
  } catch {
    throw new AdminError(`field "${key}": time: invalid duration ${JSON.stringify(value)}`);
  }
}

export function configView(engine: SimEngine): Record<string, unknown> {
  const c = engine.config;
  const latencies: Record<string, string> = {};
  for (const [k, field] of Object.entries(LATENCY_KEYS)) latencies[k] = formatDuration(c[field]);
  return {
    port: engine.port,
    model: c.model[0],
    'served-model-name': engine.servedModels,
    mode: c.mode,
    seed: c.seed,
    'time-scale': c.timeScale,
    'max-num-seqs': c.maxNumSeqs,
    'max-waiting-queue-length': c.maxWaitingQueueLength,
    'max-model-len': c.maxModelLen,
    'latency-calculator': c.latencyCalculator,
    'time-factor-under-load': c.timeFactorUnderLoad,
    latencies,
    kvcache: { 'enable-kvcache': c.enableKvcache, 'kv-cache-size': c.kvCacheSize, 'block-size': c.blockSize },
    'data-parallel-size': c.dataParallelSize,
    'engine-id': engine.engineId,
    faults: {
      hang: engine.faults.hang,
      'drop-connections': engine.faults.dropConnections,
      'return-error': engine.faults.returnError,
      'return-error-count': engine.faults.returnErrorCount,
    },
  };
}

function applyConfig(engine: SimEngine, body: unknown): void {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new AdminError('failed to unmarshal payload: expected a JSON object');
  const next: SimConfig = { ...engine.config };
  const faults = { ...engine.faults };
  const entries = Object.entries(body as Record<string, unknown>);
  const flatLatency = entries.filter(([k]) => k in LATENCY_KEYS).map(([k]) => k);
  for (const [key, value] of entries) {
    if (key === 'latencies') {
      if (flatLatency.length > 0) {
        throw new AdminError(`latencies settings mix the flat layout (${flatLatency.join(', ')}) with the nested latencies object; use only one`);
      }
      if (typeof value !== 'object' || value === null) throw new AdminError('field "latencies" must be an object');
      for (const [lk, lv] of Object.entries(value as Record<string, unknown>)) {
        if (!(lk in LATENCY_KEYS)) throw new AdminError(`field '${lk}' is not a latencies field`);
        next[LATENCY_KEYS[lk as LatencyKey]] = latencyValue(lk, lv);
      }
    } else if (key in LATENCY_KEYS) {
      next[LATENCY_KEYS[key as LatencyKey]] = latencyValue(key, value);
    } else if (key === 'latency-calculator') {
      if (value !== '' && value !== 'constant' && value !== 'per-token') throw new AdminError(`field "latency-calculator": must be "", constant or per-token`);
      next.latencyCalculator = value;
    } else if (key === 'time-factor-under-load') {
      if (typeof value !== 'number' || value < 1) throw new AdminError('time factor under load must be >= 1');
      next.timeFactorUnderLoad = value;
    } else if (key === 'hang' || key === 'drop-connections') {
      if (typeof value !== 'boolean') throw new AdminError(`field "${key}" must be true or false`);
      if (key === 'hang') faults.hang = value;
      else faults.dropConnections = value;
    } else if (key === 'return-error') {
      if (typeof value !== 'number' || !Number.isInteger(value) || (value !== 0 && (value < 400 || value > 599))) {
        throw new AdminError('field "return-error" must be 0 or an HTTP status between 400 and 599');
      }
      faults.returnError = value;
    } else if (key === 'return-error-count') {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw new AdminError('field "return-error-count" must be a non-negative integer');
      faults.returnErrorCount = value;
    } else {
      throw new AdminError(`field '${key}' is not admin-configurable`);
    }
  }
  for (const [mean, std, label] of [
    ['timeToFirstToken', 'timeToFirstTokenStdDev', 'time to first token'],
    ['interTokenLatency', 'interTokenLatencyStdDev', 'inter token latency'],
    ['kvCacheTransferLatency', 'kvCacheTransferLatencyStdDev', 'kv cache transfer latency'],
  ] as const) {
    if (next[std] > 0.3 * next[mean]) throw new AdminError(`${label} standard deviation cannot be more than 30% of ${label}`);
  }
  engine.reconfigure(next);
  Object.assign(engine.faults, faults);
}

export function registerAdminRoutes(app: FastifyInstance, engine: SimEngine): void {
  app.get('/admin/config', async () => configView(engine));
  app.post('/admin/config', async (request, reply) => {
    const raw = request.body as Buffer | undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw?.toString('utf8') ?? '');
    } catch (e) {
      return reply.code(400).send(openAIError(400, `failed to unmarshal payload: ${(e as Error).message}`));
    }
    try {
      applyConfig(engine, parsed);
    } catch (e) {
      if (e instanceof AdminError) return reply.code(400).send(openAIError(400, e.message));
      throw e;
    }
    engine.logger.info({ config: configView(engine) }, 'configuration changed through /admin/config');
    return configView(engine);
  });
  app.get('/admin/requests', async () => ({ requests: engine.recentRequests() }));
  app.delete('/admin/requests', async (_req, reply) => {
    engine.clearRecords();
    return reply.code(204).send();
  });
}
