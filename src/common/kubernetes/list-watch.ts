/**
 * A list+watch cache of one collection (client-go's reflector, reduced to what pd-router needs), with the callbacks
 * client-node's ListWatch had, which runInformer() keeps running:
 *
 * - start(): lists (unless a resourceVersion to resume from is known), reports every object as added (or updated, when
 *   its resourceVersion changed; objects gone since the last list as deleted), then watches from the list's
 *   resourceVersion with bookmarks. Resolves once the watch is accepted, or after a failure was reported through the
 *   `error` callbacks (then the informer is idle until start() is called again).
 * - A watch the server ends (after its --min-request-timeout, 30 to 60 minutes by default) is resumed from the last
 *   resourceVersion seen, without a list. 410 Gone (the answer, or an ERROR event: the version was compacted) re-lists
 *   at once. Any other failure (a broken connection, an over-long line, a denied watch) is reported through the
 *   `error` callbacks; the next start() resumes from the last resourceVersion (after another ERROR event it lists).
 * - stop() aborts the list or watch under way; nothing is reported or restarted after it.
 */
import type { KubeApiError, KubeClient, KubeObject, Query, WatchHandle } from './client.js';

type Verb = 'add' | 'update' | 'delete';

export interface ListWatchOptions {
  labelSelector?: string;
  fieldSelector?: string;
  /**
   * Server-side watch timeout in seconds (`timeoutSeconds`). Default: none, so the API server ends each watch after its
   * own --min-request-timeout (30 to 60 minutes by default), as client-node's ListWatch let it.
   */
  watchTimeoutSeconds?: () => number;
}

const keyOf = (obj: KubeObject) => `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;

export class ListWatch<T extends KubeObject = KubeObject> {
  private objects = new Map<string, T>();
  private readonly callbacks: Record<Verb, Array<(obj: T) => void>> = { add: [], update: [], delete: [] };
  private readonly errorCallbacks: Array<(err: unknown) => void> = [];
  private resourceVersion = '';
  /** What the last failure reported through the `error` callbacks was doing (for the log line's permission). */
  failedVerb: 'list' | 'watch' = 'watch';
  private stopped = false;
  /** Bumped by start() and stop(): a list or watch of an older generation acts on nothing. */
  private generation = 0;
  private handle?: WatchHandle;
  private listAbort?: AbortController;
  /** Bumped by each list/watch attempt: a watch handle that comes back after a newer attempt began is not kept. */
  private runs = 0;

  constructor(
    private readonly client: KubeClient,
    readonly path: string,
    private readonly options: ListWatchOptions = {},
  ) {}

  on(verb: Verb, cb: (obj: T) => void): void;
  on(verb: 'error', cb: (err: unknown) => void): void;
  on(verb: Verb | 'error', cb: ((obj: T) => void) | ((err: unknown) => void)): void {
    if (verb === 'error') this.errorCallbacks.push(cb as (err: unknown) => void);
    else this.callbacks[verb].push(cb);
  }

  list(): T[] {
    return [...this.objects.values()];
  }

  latestResourceVersion(): string {
    return this.resourceVersion;
  }

  async start(): Promise<void> {
    this.stopped = false;
    const generation = ++this.generation;
    await this.run(generation);
  }

  stop(): Promise<void> {
    this.stopped = true;
    this.generation++;
    this.halt();
    return Promise.resolve();
  }

  private halt(): void {
    this.handle?.abort();
    this.handle = undefined;
    this.listAbort?.abort();
    this.listAbort = undefined;
  }

  private current(generation: number): boolean {
    return !this.stopped && generation === this.generation;
  }

  private fail(generation: number, err: unknown): void {
    if (!this.current(generation)) return;
    this.halt();
    for (const cb of this.errorCallbacks.slice()) cb(err);
  }

  private selectors(): Query {
    return { labelSelector: this.options.labelSelector, fieldSelector: this.options.fieldSelector };
  }

  private async run(generation: number): Promise<void> {
    if (!this.current(generation)) return;
    this.halt();
    const run = ++this.runs;
    if (!this.resourceVersion) {
      const abort = new AbortController();
      this.listAbort = abort;
      let list;
      try {
        list = await this.client.list<T>(this.path, { query: this.selectors(), signal: abort.signal });
      } catch (err) {
        this.failedVerb = 'list';
        this.fail(generation, err);
        return;
      }
      if (!this.current(generation)) return;
      this.listAbort = undefined;
      this.replaceAll(Array.isArray(list.items) ? list.items : []);
      this.resourceVersion = list.metadata?.resourceVersion ?? '';
    }
    const timeoutSeconds = this.options.watchTimeoutSeconds?.();
    const handle = await this.client.watch<T>(
      this.path,
      {
        ...this.selectors(),
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds,
      },
      (event) => this.onEvent(generation, event.type, event.object),
      (err) => this.onDone(generation, err),
    );
    // A stop() while the watch was being opened: its handle came back after halt() ran.
    if (!this.current(generation)) handle.abort();
    else if (run === this.runs) this.handle = handle;
  }

  private onDone(generation: number, err?: Error): void {
    if (!this.current(generation)) return;
    if (err && (err as Partial<KubeApiError>).code === 410) {
      this.resourceVersion = '';
      void this.run(generation);
      return;
    }
    if (err) {
      this.failedVerb = 'watch';
      this.fail(generation, err);
      return;
    }
    void this.run(generation); // the server ended the watch: resume from the last resourceVersion
  }

  private onEvent(generation: number, type: string, obj: T): void {
    if (!this.current(generation)) return;
    if (type === 'ERROR') {
      // An ERROR event carries a Status object in place of the watched kind.
      const status = { code: (obj as KubeObject).code as unknown, message: (obj as KubeObject).message as unknown };
      this.resourceVersion = '';
      this.handle?.abort();
      this.handle = undefined;
      const code = typeof status.code === 'number' ? status.code : undefined;
      if (code === 410) {
        void this.run(generation);
        return;
      }
      const message = typeof status.message === 'string' ? status.message : `watch ${this.path}: ERROR event`;
      const err = Object.assign(new Error(message), {
        code,
        statusCode: code,
        body: JSON.stringify(obj),
      });
      this.failedVerb = 'watch';
      this.fail(generation, err);
      return;
    }
    if (type === 'ADDED' || type === 'MODIFIED') this.addOrUpdate(obj);
    else if (type === 'DELETED') this.remove(obj);
    const rv = obj?.metadata?.resourceVersion;
    if (rv) this.resourceVersion = rv;
  }

  private emit(verb: Verb, obj: T): void {
    for (const cb of this.callbacks[verb].slice()) cb(obj);
  }

  private addOrUpdate(obj: T): void {
    const key = keyOf(obj);
    const found = this.objects.get(key);
    this.objects.set(key, obj);
    if (!found) this.emit('add', obj);
    else if (found.metadata?.resourceVersion !== obj.metadata?.resourceVersion || !obj.metadata?.resourceVersion)
      this.emit('update', obj);
  }

  private remove(obj: T): void {
    const key = keyOf(obj);
    if (!this.objects.delete(key)) return;
    this.emit('delete', obj);
  }

  /** A fresh list: objects not in it are deleted, the others added or updated. */
  private replaceAll(items: T[]): void {
    const keep = new Set(items.map(keyOf));
    for (const [key, old] of [...this.objects]) {
      if (keep.has(key)) continue;
      this.objects.delete(key);
      this.emit('delete', old);
    }
    for (const obj of items) this.addOrUpdate(obj);
  }
}
