/**
 * File discovery (llm-d `file-discovery`): endpoints from a YAML or JSON file of at most 1 MiB,
 *
 *   endpoints:
 *   - {name: p0, namespace: default, address: 10.0.0.1, port: "8000", labels: {llm-d.ai/role: prefill}}
 *
 * With `watch`, the file is re-read when its directory changes (fs.watch also sees ConfigMap symlink swaps) and on a
 * periodic stat as a fallback; a file that fails to read or validate keeps the previous endpoints. Two entries with
 * the same namespace and name make the file invalid. Addresses must be IP literals (upstream accepts IPv4 only; pd-router also accepts IPv6).
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { EndpointSpec } from './endpoint-store.js';

export const MAX_ENDPOINTS_FILE_BYTES = 1024 * 1024;
const POLL_MS = 1_000;
const DEBOUNCE_MS = 50;

const port = z
  .union([z.number(), z.string().regex(/^\d+$/, 'port must be a number').transform(Number)])
  .pipe(z.number().int().min(1, 'port must be between 1 and 65535').max(65535, 'port must be between 1 and 65535'));

const fileSchema = z.object({
  endpoints: z
    .array(
      z.object({
        name: z.string().min(1, 'name must not be empty'),
        namespace: z.string().min(1).default('default'),
        address: z.string().refine((left) => isIP(left) !== 0, 'address must be an IP address'),
        port,
        labels: z.record(z.string(), z.string()).default({}),
      }),
    )
    .nullable()
    .default([])
    // `endpoints:` with nothing under it (an emptied ConfigMap) is an empty pool.
    .transform((items) => items ?? []),
});

/** Parses an endpoints file's text; throws an Error naming the entry and field at fault. */
export function parseEndpointsFile(text: string, origin: string): EndpointSpec[] {
  if (Buffer.byteLength(text) > MAX_ENDPOINTS_FILE_BYTES) throw new Error(`${origin} is larger than 1 MiB`);
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new Error(`${origin}: cannot parse as YAML or JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  const r = fileSchema.safeParse(doc ?? {});
  if (!r.success) throw new Error(`${origin}: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  // Two entries with one name would be one endpoint in the store (the last silently winning): a typo to report.
  const seen = new Map<string, number>();
  for (const [i, e] of r.data.endpoints.entries()) {
    const id = `${e.namespace}/${e.name}`;
    const first = seen.get(id);
    if (first !== undefined) throw new Error(`${origin}: endpoints.${i}: duplicate endpoint name "${e.name}" in namespace "${e.namespace}" (also endpoints.${first})`);
    seen.set(id, i);
  }
  return r.data.endpoints;
}

export class EndpointsFileWatcher {
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private lastText: string | undefined;
  private reading: Promise<void> | undefined;
  private lastStat = '';
  /** Reload failures since start (for tests and metrics). */
  errors = 0;

  constructor(
    readonly file: string,
    private readonly onEndpoints: (specs: EndpointSpec[]) => void,
    private readonly logger: Logger,
    private readonly onError: () => void = () => undefined,
  ) {}

  /** Reads the file once; throws if it is missing or invalid (a bad file at start is a startup error). */
  async load(): Promise<void> {
    const text = await readFile(this.file, 'utf8');
    const specs = parseEndpointsFile(text, this.file);
    this.lastText = text;
    this.onEndpoints(specs);
  }

  /** Starts watching for changes. */
  watch(): void {
    const dir = path.dirname(this.file);
    try {
      this.watcher = watch(dir, () => this.schedule(true));
      this.watcher.on('error', (err) => this.logger.warn({ err, file: this.file }, 'endpoints file watch failed; polling only'));
      this.watcher.unref();
    } catch (err) {
      this.logger.warn({ err, file: this.file }, 'cannot watch endpoints file directory; polling only');
    }
    this.poll = setInterval(() => this.schedule(false), POLL_MS);
    this.poll.unref();
  }

  private schedule(force: boolean): void {
    if (!force && this.debounce) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      void this.reload(force);
    }, DEBOUNCE_MS);
    this.debounce.unref();
  }

  private async reload(force: boolean): Promise<void> {
    if (this.reading) return this.reading;
    this.reading = (async () => {
      try {
        const st = await stat(this.file, { bigint: true });
        const key = `${st.ino}:${st.size}:${st.mtimeNs}`;
        if (!force && key === this.lastStat) return;
        this.lastStat = key;
        if (st.size > MAX_ENDPOINTS_FILE_BYTES) throw new Error(`${this.file} is larger than 1 MiB`);
        const text = await readFile(this.file, 'utf8');
        if (text === this.lastText) return;
        const specs = parseEndpointsFile(text, this.file);
        this.lastText = text;
        this.onEndpoints(specs);
        this.logger.info({ file: this.file, endpoints: specs.length }, 'endpoints file reloaded');
      } catch (err) {
        this.errors++;
        this.onError();
        // Remember the bad text so a broken file is reported once, not on every poll.
        this.lastText = await readFile(this.file, 'utf8').catch(() => this.lastText);
        this.logger.warn({ err: (err as Error).message, file: this.file }, 'endpoints file reload failed; keeping the previous endpoints');
      } finally {
        this.reading = undefined;
      }
    })();
    return this.reading;
  }

  close(): void {
    this.watcher?.close();
    clearInterval(this.poll);
    clearTimeout(this.debounce);
  }
}
