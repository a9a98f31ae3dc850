/**
 * The EPP's one budget for request bodies being buffered (FULL_DUPLEX_STREAMED bodies are held until their end of
 * stream, then parsed and scheduled). Without it, a dozen clients each sending 60 MB and then stalling took the EPP
 * from 377 to 973 MB, held until the stream idle timeout: every stream was within --max-request-body-size, together
 * they were not. A stream takes bytes chunk by chunk as they arrive and gives them all back when its request is
 * parsed, rejected or gone.
 */
import type { Gauge } from 'prom-client';

export class RequestBufferBudget {
  private used = 0;

  constructor(
    readonly limit: number,
    private readonly gauge?: Gauge,
  ) {}

  /** Bytes held by all streams now. */
  get inUse(): number {
    return this.used;
  }

  /** Takes `n` bytes; false (and nothing taken) when that would pass the limit. */
  take(count: number): boolean {
    if (this.used + count > this.limit) return false;
    this.used += count;
    this.gauge?.set(this.used);
    return true;
  }

  give(count: number): void {
    if (count <= 0) return;
    this.used -= count;
    this.gauge?.set(this.used);
  }
}
