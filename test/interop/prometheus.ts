/**
 * A real Prometheus as a test peer (Debian's `prometheus` package, 2.42 on bookworm; `PROMETHEUS_BIN` overrides the
 * binary): started on loopback with a temporary config and data directory, synchronised on its own API (readiness,
 * `/api/v1/targets` reporting a scrape that began after a given moment), queried with `/api/v1/query`, stopped by
 * its own pid.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify as toYaml } from 'yaml';
import { freePortRange, waitFor } from '../helpers.js';

export const PROMETHEUS_MISSING =
  'Prometheus dashboard tests skipped: no `prometheus` binary on PATH (set PROMETHEUS_BIN, or `apt-get install -y prometheus` on Debian/Ubuntu; .ci/run installs it).';

/** The binary, and its version line; undefined when there is none. */
export function prometheusBinary(): { bin: string; version: string } | undefined {
  const bin = process.env.PROMETHEUS_BIN || 'prometheus';
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  if (r.error || r.status !== 0) return undefined;
  return { bin, version: `${r.stdout}${r.stderr}`.split('\n')[0].trim() };
}

export interface ScrapeJob {
  job: string;
  path: string;
  targets: string[];
}

export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

interface TargetStatus {
  labels: Record<string, string>;
  scrapeUrl: string;
  health: string;
  lastError: string;
  lastScrape: string;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export class PrometheusPeer {
  private constructor(
    readonly url: string,
    private readonly child: ChildProcess,
    private readonly dir: string,
    private readonly out: () => string,
  ) {}

  /** Starts Prometheus scraping `jobs` every `intervalS` seconds; resolves once it reports ready (within `timeoutMs`). */
  static async start(
    bin: string,
    jobs: ScrapeJob[],
    opts: { intervalS?: number; timeoutMs?: number } = {},
  ): Promise<PrometheusPeer> {
    const interval = `${opts.intervalS ?? 1}s`;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pd-interop-prometheus-'));
    const config = path.join(dir, 'prometheus.yml');
    writeFileSync(
      config,
      toYaml({
        global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
        scrape_configs: jobs.map((j) => ({
          job_name: j.job,
          metrics_path: j.path,
          static_configs: [{ targets: j.targets }],
        })),
      }),
    );
    const port = await freePortRange(1);
    const child = spawn(
      bin,
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${path.join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    live.add(child);
    let out = '';
    const keep = (chunk: Buffer) => (out = (out + chunk.toString()).slice(-200_000));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const peer = new PrometheusPeer(`http://127.0.0.1:${port}`, child, dir, () => out);
    try {
      await waitFor(
        async () => {
          if (child.exitCode !== null)
            throw new Error(`prometheus exited with ${child.exitCode}:\n${out.slice(-4000)}`);
          return (
            (await fetch(`${peer.url}/-/ready`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined))
              ?.status === 200
          );
        },
        opts.timeoutMs ?? 30_000,
        'Prometheus ready',
      );
    } catch (e) {
      await peer.close();
      throw e;
    }
    return peer;
  }

  output(): string {
    return this.out();
  }

  async targets(): Promise<TargetStatus[]> {
    const r = (await (
      await fetch(`${this.url}/api/v1/targets?state=active`, { signal: AbortSignal.timeout(5000) })
    ).json()) as { data: { activeTargets: TargetStatus[] } };
    return r.data.activeTargets;
  }

  /**
   * Waits until every target reports a successful scrape that started after `since` (ms since the epoch): the
   * samples it took include whatever happened before `since`.
   */
  async scrapedAfter(since: number, expectedTargets: number, timeoutMs = 20_000): Promise<void> {
    let last: TargetStatus[] = [];
    try {
      await waitFor(
        async () => {
          last = await this.targets();
          return (
            last.length === expectedTargets &&
            last.every((targetStatus) => targetStatus.health === 'up' && Date.parse(targetStatus.lastScrape) > since)
          );
        },
        timeoutMs,
        `every target scraped after ${new Date(since).toISOString()}`,
      );
    } catch (e) {
      throw new Error(
        `${(e as Error).message}; targets: ${JSON.stringify(last.map((targetStatus) => ({ url: targetStatus.scrapeUrl, health: targetStatus.health, lastScrape: targetStatus.lastScrape, error: targetStatus.lastError })))}`,
      );
    }
  }

  /** An instant query; throws on a query error (a typo in a dashboard fails loudly, not as "no data"). */
  async query(expr: string, atMs: number): Promise<Sample[]> {
    const u = new URL(`${this.url}/api/v1/query`);
    u.searchParams.set('query', expr);
    u.searchParams.set('time', String(atMs / 1000));
    const res = await fetch(u, { signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as {
      status: string;
      error?: string;
      data?: { resultType: string; result: Sample[] };
    };
    if (body.status !== 'success') throw new Error(`query failed (${res.status}): ${body.error}\n  ${expr}`);
    if (body.data!.resultType !== 'vector') throw new Error(`expected a vector, got ${body.data!.resultType}: ${expr}`);
    return body.data!.result;
  }

  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      this.child.kill('SIGTERM');
      const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    live.delete(this.child);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
