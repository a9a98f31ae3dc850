/**
 * The parameters of the precise plugins, in upstream's shape (llm-d-kv-cache's configuration, as
 * `precise-prefix-cache-scorer` in llm-d v0.7.1 and `precise-prefix-cache-producer` in llm-d-router read it):
 *
 * ```yaml
 * tokenProcessorConfig: {blockSizeTokens: 16, blockSize (deprecated name), hashSeed: ""}
 * indexerConfig:
 *   kvBlockIndexConfig: {inMemoryConfig: {size, podCacheSize}, enableMetrics, metricsLoggingInterval}
 *   kvCacheBackendConfigs: [{name: gpu, weight: 1.0}, {name: cpu, weight: 0.8}]
 *   tokenizersPoolConfig: {...}          # v0.7.1: the scorer's own tokenizer
 * kvEventsConfig: {zmqEndpoint, topicFilter: "kv@", concurrency, engineType: vllm, discoverPods: true,
 *                  podDiscoveryConfig: {podLabelSelector, podNamespace, socketPort: 5557, replaySocketPort}}
 * speculativeIndexing: false
 * speculativeTTL: 2s
 * ```
 *
 * What pd-router does with each is in the plugin files. Keys upstream accepts but ignores in the sample configs
 * (v0.7.1 `indexerConfig.tokenProcessorConfig` and `prefixStoreConfig`, `kvBlockIndexConfig.maxPrefixBlocksToMatch`)
 * load with a warning saying so; other unknown keys are errors, as llm-d-router decodes strictly.
 */
import { z } from 'zod';
import { goDuration } from '../config/go-values.js';

const ignoredByUpstream = z.unknown().optional();

export const preciseParams = z
  .object({
    tokenProcessorConfig: z
      .object({
        blockSize: z.number().int().min(0, 'must be >= 0').optional(),
        blockSizeTokens: z.number().int().min(0, 'must be >= 0').optional(),
        hashSeed: z.string().optional(),
      })
      .strict()
      .optional(),
    indexerConfig: z
      .object({
        kvBlockIndexConfig: z
          .object({
            inMemoryConfig: z
              .object({
                size: z.number().int().positive('must be > 0').optional(),
                podCacheSize: z.number().int().positive('must be > 0').optional(),
              })
              .strict()
              .optional(),
            redisConfig: z
              .unknown()
              .refine(() => false, 'the Redis-backed index is not supported by pd-router (its index is in memory)')
              .optional(),
            costAwareMemoryConfig: z
              .unknown()
              .refine(
                () => false,
                'the cost-aware index is not supported by pd-router (its index is in memory, bounded by --kv-index-max-entries)',
              )
              .optional(),
            enableMetrics: z.boolean().optional(),
            metricsLoggingInterval: z.union([z.number(), z.string()]).optional(),
            maxPrefixBlocksToMatch: ignoredByUpstream,
          })
          .strict()
          .optional(),
        kvCacheBackendConfigs: z
          .array(z.object({ name: z.string().min(1), weight: z.number().min(0, 'must be >= 0') }).strict())
          .optional(),
        tokenizersPoolConfig: z.record(z.string(), z.unknown()).optional(),
        tokenProcessorConfig: ignoredByUpstream,
        prefixStoreConfig: ignoredByUpstream,
      })
      .strict()
      .optional(),
    kvEventsConfig: z
      .object({
        zmqEndpoint: z.string().optional(),
        topicFilter: z.string().optional(),
        concurrency: z.number().int().optional(),
        engineType: z.enum(['vllm', 'sglang', '']).optional(),
        discoverPods: z.boolean().optional(),
        podDiscoveryConfig: z
          .object({
            podLabelSelector: z.string().optional(),
            podNamespace: z.string().optional(),
            socketPort: z.number().int().min(1, 'must be a port').max(65535, 'must be a port').optional(),
            replaySocketPort: z.number().int().min(0).max(65535).optional(),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    speculativeIndexing: z.boolean().default(false),
    speculativeTTL: goDuration.optional(),
  })
  .strict()
  .superRefine((params, ctx) => {
    const e = params.kvEventsConfig?.zmqEndpoint;
    if (e && !/^tcp:\/\/(\*|\[[0-9a-fA-F:.]+\]|[^:/\s]+):(\*|\d{1,5})$/.test(e))
      ctx.addIssue({ code: 'custom', message: 'must be tcp://<host>:<port>', path: ['kvEventsConfig', 'zmqEndpoint'] });
    if (params.kvEventsConfig?.engineType === 'sglang')
      ctx.addIssue({
        code: 'custom',
        message: "SGLang's KV events are not decoded by pd-router (vllm only)",
        path: ['kvEventsConfig', 'engineType'],
      });
    if (params.speculativeTTL !== undefined && params.speculativeTTL < 0)
      ctx.addIssue({ code: 'custom', message: 'must be >= 0', path: ['speculativeTTL'] });
    const tp = params.tokenProcessorConfig;
    if (tp && tp.blockSizeTokens === 0 && tp.blockSize === 0)
      ctx.addIssue({
        code: 'custom',
        message: 'blockSizeTokens must be greater than 0',
        path: ['tokenProcessorConfig', 'blockSizeTokens'],
      });
  });

export type PreciseParams = z.infer<typeof preciseParams>;

/** What the plugins run with, after upstream's defaults. */
export interface PreciseSettings {
  blockSizeTokens: number;
  hashSeed: string;
  zmqEndpoint: string;
  topicFilter: string;
  discoverPods: boolean;
  socketPort: number;
  speculativeIndexing: boolean;
  speculativeTtlMs: number;
  gpuWeight: number;
  cpuWeight: number;
  /** Entries cap from `inMemoryConfig` (size × podCacheSize), if set. */
  configuredMaxEntries: number | undefined;
  warnings: string[];
}

export function preciseSettings(params: PreciseParams): PreciseSettings {
  const warnings: string[] = [];
  const tp = params.tokenProcessorConfig ?? {};
  // llm-d-kv-cache: blockSizeTokens, else the deprecated blockSize, else 16.
  const blockSizeTokens = tp.blockSizeTokens || tp.blockSize || 16;
  const ix = params.indexerConfig ?? {};
  if (ix.tokenProcessorConfig !== undefined)
    warnings.push(
      "indexerConfig.tokenProcessorConfig is ignored, as llm-d v0.7.1 ignores it (the block size and hash seed are tokenProcessorConfig's)",
    );
  if (ix.prefixStoreConfig !== undefined)
    warnings.push('indexerConfig.prefixStoreConfig is ignored, as llm-d v0.7.1 ignores it');
  if (ix.kvBlockIndexConfig?.maxPrefixBlocksToMatch !== undefined)
    warnings.push('indexerConfig.kvBlockIndexConfig.maxPrefixBlocksToMatch is ignored, as llm-d ignores it');
  if (ix.kvBlockIndexConfig?.metricsLoggingInterval !== undefined)
    warnings.push(
      'indexerConfig.kvBlockIndexConfig.metricsLoggingInterval is ignored: pd-router does not log metric beats (the metrics are always served)',
    );
  const weights = new Map(
    (ix.kvCacheBackendConfigs ?? []).map((backend) => [backend.name.toLowerCase(), backend.weight]),
  );
  const ke = params.kvEventsConfig ?? {};
  if (ke.concurrency !== undefined)
    warnings.push('kvEventsConfig.concurrency is ignored: events are applied in order on the event loop');
  if (ke.podDiscoveryConfig?.podLabelSelector !== undefined || ke.podDiscoveryConfig?.podNamespace !== undefined) {
    warnings.push(
      "kvEventsConfig.podDiscoveryConfig podLabelSelector/podNamespace are ignored: pd-router subscribes to the pool's endpoints",
    );
  }
  if (ke.podDiscoveryConfig?.replaySocketPort)
    warnings.push('kvEventsConfig.podDiscoveryConfig.replaySocketPort is ignored: missed events are not replayed');
  const mem = ix.kvBlockIndexConfig?.inMemoryConfig;
  return {
    blockSizeTokens,
    hashSeed: tp.hashSeed ?? '',
    zmqEndpoint: ke.zmqEndpoint ?? '',
    topicFilter: ke.topicFilter ?? 'kv@',
    discoverPods: ke.discoverPods ?? true,
    socketPort: ke.podDiscoveryConfig?.socketPort ?? 5557,
    speculativeIndexing: params.speculativeIndexing,
    speculativeTtlMs: params.speculativeTTL || 2000,
    gpuWeight: weights.get('gpu') ?? 1,
    cpuWeight: weights.get('cpu') ?? 0.8,
    configuredMaxEntries: mem?.size !== undefined ? mem.size * (mem.podCacheSize ?? 10) : undefined,
    warnings,
  };
}
