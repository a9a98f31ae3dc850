/**
 * The simulator's latency model, with llm-d-inference-sim's calculators, flag names and defaults:
 *
 *   calculator   aggregated TTFT                                     remote-prefill TTFT (do_remote_prefill)
 *   constant     N(ttft * LF, ttft-std)                              N(kv-latency, kv-latency-std)
 *   per-token    N(overhead*LF + (n - cached)*per-token*LF, std)     N(n * kv-per-token, kv-std)
 *   "" (legacy)  per-token if ttft and its std are 0, else constant  per-token if kv-latency and its std are 0, else constant
 *
 * Inter-token latency is N(itl * LF, itl-std). The load factor LF = 1 + (time-factor-under-load - 1) * (running - 1) /
 * (max-num-seqs - 1) grows with the running batch and is never applied to KV transfer. All values are milliseconds of
 * simulated time; the server multiplies by --time-scale when it sleeps.
 */
import { normalDurationMs, type SeededRandom } from './random.js';

export type LatencyCalculator = '' | 'constant' | 'per-token';

/** The latency flags, parsed. */
export interface LatencySettings {
  latencyCalculator: LatencyCalculator;
  timeToFirstToken: number;
  timeToFirstTokenStdDev: number;
  interTokenLatency: number;
  interTokenLatencyStdDev: number;
  prefillOverhead: number;
  prefillTimePerToken: number;
  prefillTimeStdDev: number;
  kvCacheTransferLatency: number;
  kvCacheTransferLatencyStdDev: number;
  kvCacheTransferTimePerToken: number;
  kvCacheTransferTimeStdDev: number;
  timeFactorUnderLoad: number;
  maxNumSeqs: number;
  /** Truncate means and std-devs to whole milliseconds, exactly as upstream does (sub-ms totals become 0). */
  latencyMsTruncation: boolean;
}

export interface PrefillInput {
  promptTokens: number;
  cachedTokens: number;
  /** Requests running on this instance, including this one. */
  running: number;
}

/** Simulated time to first token and between tokens, from the latency settings and the load. */
export class LatencyModel {
  constructor(
    private settings: LatencySettings,
    private readonly rng: SeededRandom,
  ) {}

  update(settings: LatencySettings): void {
    this.settings = settings;
  }

  get current(): Readonly<LatencySettings> {
    return this.settings;
  }

  loadFactor(running: number): number {
    const s = this.settings;
    if (s.maxNumSeqs <= 1 || running <= 1) return 1;
    return 1 + ((s.timeFactorUnderLoad - 1) * (Math.min(running, s.maxNumSeqs) - 1)) / (s.maxNumSeqs - 1);
  }

  private sample(mean: number, std: number): number {
    return normalDurationMs(this.rng, mean, std, !this.settings.latencyMsTruncation);
  }

  /** Whether the aggregated TTFT uses the per-token form. */
  private perTokenPrefill(): boolean {
    const s = this.settings;
    if (s.latencyCalculator === 'per-token') return true;
    if (s.latencyCalculator === 'constant') return false;
    return s.timeToFirstToken === 0 && s.timeToFirstTokenStdDev === 0;
  }

  private perTokenTransfer(): boolean {
    const s = this.settings;
    if (s.latencyCalculator === 'per-token') return true;
    if (s.latencyCalculator === 'constant') return false;
    return s.kvCacheTransferLatency === 0 && s.kvCacheTransferLatencyStdDev === 0;
  }

  /** Prefill time of an aggregated request or of a prefill-only (do_remote_decode) request. */
  prefillMs(input: PrefillInput): number {
    const s = this.settings;
    const lf = this.loadFactor(input.running);
    if (this.perTokenPrefill()) {
      const uncached = Math.max(0, input.promptTokens - input.cachedTokens);
      return this.sample(s.prefillOverhead * lf + uncached * s.prefillTimePerToken * lf, s.prefillTimeStdDev);
    }
    return this.sample(s.timeToFirstToken * lf, s.timeToFirstTokenStdDev);
  }

  /** KV-transfer time that replaces prefill on the decode side of a P/D request. Never scaled by load. */
  kvTransferMs(promptTokens: number): number {
    const s = this.settings;
    if (this.perTokenTransfer())
      return this.sample(promptTokens * s.kvCacheTransferTimePerToken, s.kvCacheTransferTimeStdDev);
    return this.sample(s.kvCacheTransferLatency, s.kvCacheTransferLatencyStdDev);
  }

  /** Time between two output tokens. */
  interTokenMs(running: number): number {
    const s = this.settings;
    return this.sample(s.interTokenLatency * this.loadFactor(running), s.interTokenLatencyStdDev);
  }
}
