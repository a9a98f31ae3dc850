/**
 * A deadline for one outgoing call that is cancelled when the call ends.
 *
 * `AbortSignal.timeout()` is not used on paths that run often (metrics scrapes, tokenizer calls): its timer cannot be
 * cleared and keeps a WeakRef to the signal until it fires. V8's young-generation collector treats WeakRef targets
 * as strong, so each signal, with the listeners the HTTP client put on it and what they reach, survives every
 * scavenge for the whole timeout and is promoted to the old generation. Measured on the EPP at one stream with 60
 * scrapes a second: 702 → 671 KB promoted per scavenge (bench/results/epp-perf.md, third pass; most of the rest was
 * another cause).
 * Here the timer is cleared when the call ends, so nothing of the call outlives it.
 */
export interface Deadline {
  readonly signal: AbortSignal;
  /** Stops the timer; call it once the call has ended, however it ended. */
  clear(): void;
}

/** A signal that aborts with a `TimeoutError` DOMException (as `AbortSignal.timeout`) after `timeoutMs`. */
export function deadline(timeoutMs: number): Deadline {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new DOMException(`the operation timed out after ${timeoutMs} ms`, 'TimeoutError')),
    timeoutMs,
  );
  // Like AbortSignal.timeout: a pending deadline does not keep the process alive.
  timer.unref();
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}
