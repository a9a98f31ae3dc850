/** Builds DecisionInputs for decider tests. */
import type { DeciderEndpoint, DecisionInput, PrefixMatch } from '../../src/decider/index.js';

export const endpoint: DeciderEndpoint = {
  id: 'default/d0',
  address: '10.0.0.2',
  port: 8000,
  hostPort: '10.0.0.2:8000',
  labels: { 'llm-d.ai/role': 'decode' },
  metrics: {
    waitingQueueSize: 0,
    runningRequests: 0,
    kvCacheUsage: 0,
    cacheBlockSize: 16,
    cacheNumBlocks: 1000,
    updatedAt: 1,
    stale: false,
  },
};

export function input(
  tokenCount: number,
  decode: { prefix?: PrefixMatch } | undefined,
  body?: Record<string, unknown>,
): DecisionInput {
  return {
    request: { requestId: 'r', model: 'm', targetModel: 'm', tokenCount, prompts: [], headers: {}, body },
    decode: decode ? { endpoint, prefix: decode.prefix } : undefined,
    prefillCandidates: [],
    now: () => 0,
  };
}

export const cached = (matchedBlocks: number, totalBlocks: number, blockSizeTokens = 1): { prefix: PrefixMatch } => ({
  prefix: { matchedBlocks, totalBlocks, blockSizeTokens },
});
