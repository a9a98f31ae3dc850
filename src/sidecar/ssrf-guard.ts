/**
 * SSRF protection for prefill targets. The x-prefiller-host-port header names a host the sidecar will POST the
 * client's request (Authorization included) to, so with protection on only pool members may be targets.
 *
 * Unlike upstream (host-only match: any port on an allowed pod passes, llm-d #979), a target must match host AND port:
 * the InferencePool's pods (IP or pod name) on its target ports, or a static list of host:port entries (a flag or a file
 * reloaded on change) for deployments without Kubernetes. Until the pool watch has synced, every target is denied.
 */
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import type { Logger } from 'pino';
import type { KubeClientSettings, PodEndpoint, PoolWatcher } from '../common/kubernetes/index.js';
import { ConfigError, parseTarget, parseYaml } from '../common/index.js';

export interface TargetGuard {
  readonly mode: 'off' | 'static' | 'inference-pool';
  allowed(host: string, port: number): boolean;
  /** False until the allowlist is known (pool watch synced). */
  ready(): boolean;
  size(): number;
  close(): Promise<void>;
}

function key(host: string, port: number): string {
  return `${host.toLowerCase().replace(/^\[|\]$/g, '')}:${port}`;
}

export const allowAll: TargetGuard = {
  mode: 'off',
  allowed: () => true,
  ready: () => true,
  size: () => 0,
  close: async () => undefined,
};

/** Parses an allowlist file: a YAML/JSON list, `{targets: [...]}`, or one host:port per line. */
export function parseAllowlistFile(text: string): string[] {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch {
    doc = undefined;
  }
  const list = Array.isArray(doc)
    ? doc
    : doc && typeof doc === 'object' && Array.isArray((doc as { targets?: unknown }).targets)
      ? (doc as { targets: unknown[] }).targets
      : text.split(/\r?\n/);
  const out: string[] = [];
  for (const raw of list) {
    const s = String(raw).replace(/#.*$/, '').trim();
    if (!s) continue;
    if (!parseTarget(s))
      throw new Error(`entry "${s}" is not host:port (a DNS name, IPv4 or [IPv6] address and a port from 1 to 65535)`);
    out.push(s);
  }
  return out;
}

/**
 * Reads and parses --ssrf-allowlist-file. A file that cannot be read or holds a bad entry is a configuration error:
 * one line naming the flag, the file and the problem, exit code 2 (it was an exit 1 with a stack trace).
 */
function readAllowlistFile(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why =
      e.code === 'ENOENT'
        ? 'no such file'
        : e.code === 'EISDIR'
          ? 'it is a directory'
          : e.code === 'EACCES'
            ? 'permission denied'
            : (e.code ?? e.message);
    throw new ConfigError(`invalid value "${file}" for --ssrf-allowlist-file: cannot read it (${why})`);
  }
  try {
    return parseAllowlistFile(text);
  } catch (err) {
    throw new ConfigError(`invalid value "${file}" for --ssrf-allowlist-file: ${(err as Error).message}`);
  }
}

export class StaticAllowlist implements TargetGuard {
  readonly mode = 'static' as const;
  private entries = new Set<string>();
  private fileWatcher?: FSWatcher;

  constructor(
    private readonly flagEntries: readonly string[],
    private readonly file: string,
    private readonly logger: Logger,
  ) {
    this.entries = this.build(this.file ? readAllowlistFile(this.file) : []);
    if (file) {
      let pending: NodeJS.Timeout | undefined;
      this.fileWatcher = watch(file, () => {
        clearTimeout(pending);
        pending = setTimeout(() => this.reload(), 100);
      });
      this.fileWatcher.unref();
    }
  }

  private build(fileEntries: string[]): Set<string> {
    const set = new Set<string>();
    for (const e of [...this.flagEntries, ...fileEntries]) {
      const t = parseTarget(e)!;
      set.add(key(t.host, t.port));
    }
    return set;
  }

  reload(): void {
    try {
      this.entries = this.build(readAllowlistFile(this.file));
      this.logger.info({ file: this.file, targetCount: this.entries.size }, 'rebuilt SSRF allowlist');
    } catch (err) {
      this.logger.warn({ err, file: this.file }, 'SSRF allowlist reload failed; keeping the previous one');
    }
  }

  allowed(host: string, port: number): boolean {
    return this.entries.has(key(host, port));
  }
  ready(): boolean {
    return true;
  }
  size(): number {
    return this.entries.size;
  }
  async close(): Promise<void> {
    this.fileWatcher?.close();
  }
}

export class InferencePoolAllowlist implements TargetGuard {
  readonly mode = 'inference-pool' as const;
  private entries = new Set<string>();
  private synced = false;

  private constructor(
    private readonly watcher: PoolWatcher,
    private readonly logger: Logger,
  ) {
    this.watcher.on('change', (eps) => this.rebuild(eps));
  }

  /** The Kubernetes access layer is loaded only here: a sidecar without SSRF protection never needs it. */
  static async create(
    pool: string,
    group: string,
    kube: KubeClientSettings,
    logger: Logger,
  ): Promise<InferencePoolAllowlist> {
    const { PoolWatcher, loadKubeConfig } = await import('../common/kubernetes/index.js');
    const [namespace, name] = pool.includes('/') ? (pool.split('/', 2) as [string, string]) : ['default', pool];
    return new InferencePoolAllowlist(
      new PoolWatcher(loadKubeConfig(kube), { kind: 'pool', namespace, name, group }, logger),
      logger,
    );
  }

  /**
   * Starts the watch and returns at once: the sidecar listens meanwhile (so its liveness probe passes while, say, RBAC
   * denies the watch), denying prefills and failing /ready until the first sync. If that takes longer than
   * `syncTimeoutMs`, one error names the cause (the missing permission, the unreachable address); the watch keeps
   * retrying with backoff.
   */
  start(syncTimeoutMs: number): void {
    this.watcher.start();
    void this.watcher.synced(syncTimeoutMs).then(
      () => {
        this.synced = true;
      },
      () => {
        const cause = this.watcher.lastError;
        this.logger.error(
          { syncTimeoutMs, ...(cause ?? {}) },
          `SSRF allowlist not synced within ${syncTimeoutMs} ms${cause ? `: ${cause.missingPermission ? `forbidden to ${cause.missingPermission}` : cause.error}` : ''}; prefill targets are denied and /ready fails until it is`,
        );
        void this.watcher.synced(24 * 3600 * 1000).then(
          () => {
            this.synced = true;
            this.logger.info('SSRF allowlist synced');
          },
          () => undefined,
        );
      },
    );
  }

  private rebuild(eps: PodEndpoint[]): void {
    const set = new Set<string>();
    for (const e of eps) {
      set.add(key(e.address, e.port));
      set.add(key(e.podName, e.port));
    }
    this.entries = set;
    this.logger.info({ targetCount: set.size, targets: [...set].slice(0, 50) }, 'rebuilt allowlist');
  }

  allowed(host: string, port: number): boolean {
    return this.synced && this.entries.has(key(host, port));
  }
  ready(): boolean {
    return this.synced;
  }
  size(): number {
    return this.entries.size;
  }
  async close(): Promise<void> {
    await this.watcher.stop();
  }
}
