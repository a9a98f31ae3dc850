/**
 * Keeps a ListWatch (list-watch.ts) running: ListWatch reports list/watch failures through its error callback
 * (its start() resolves either way) and then stops, so a failed attempt schedules a restart with exponential backoff
 * (500 ms doubling to 30 s, reset by a successful list). Used by the PoolWatcher (pool and pods) and by the EPP's
 * InferenceModelRewrite / InferenceObjective watcher.
 */
import type { ListWatch } from './list-watch.js';
import type { Logger } from 'pino';

export const INFORMER_RETRY_MIN_MS = 500;
export const INFORMER_RETRY_MAX_MS = 30_000;

export interface InformerRun {
  /** What the informer lists, for logs (`pods`, `inferencemodelrewrites.llm-d.ai`). */
  what: string;
  logger: Logger;
  /**
   * True once the informer was stopped on purpose: stopping aborts its watch, which ListWatch reports as an error;
   * that error is neither reported nor retried (a restart would leak a zombie informer).
   */
  retired(): boolean;
  /**
   * The log fields for a failure (e.g. the permission to grant, the address that did not answer); without it the
   * error itself is logged.
   */
  describe?(err: unknown): Record<string, unknown>;
  /** A list or watch failure, after it was logged (a retry is scheduled). */
  onError?(err: Error): void;
  /** An attempt whose list succeeded (the informer's cache is complete). */
  onSynced(): void;
}

export interface RunningInformer {
  /** Cancels a scheduled retry (the caller stops the informer itself). */
  cancel(): void;
}

/** The HTTP status of a list (KubeApiError `code`) or watch (`statusCode`) failure, when it has one. */
export function kubeErrorStatus(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown } | undefined;
  if (typeof e?.code === 'number') return e.code;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  return undefined;
}

export function runInformer(informer: ListWatch, run: InformerRun): RunningInformer {
  let failed = false;
  let retryDelay = INFORMER_RETRY_MIN_MS;
  let timer: NodeJS.Timeout | undefined;
  informer.on('error', (err: unknown) => {
    failed = true;
    if (run.retired()) return;
    const error = err instanceof Error ? err : new Error(String((err as { message?: string })?.message ?? err));
    const fields = run.describe ? run.describe(err) : { err: error };
    run.logger.warn({ what: run.what, ...fields, retryInMs: retryDelay }, 'kubernetes list/watch failed, retrying');
    run.onError?.(error);
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      if (!run.retired()) attempt();
    }, retryDelay);
    retryDelay = Math.min(INFORMER_RETRY_MAX_MS, retryDelay * 2);
  });
  const attempt = () => {
    failed = false;
    informer.start().then(
      () => {
        if (failed || run.retired()) return;
        retryDelay = INFORMER_RETRY_MIN_MS;
        run.onSynced();
      },
      () => undefined, // reported through the error callback
    );
  };
  attempt();
  return { cancel: () => clearTimeout(timer) };
}
