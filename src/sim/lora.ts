/**
 * LoRA adapters, as llm-d-inference-sim simulates them: `--lora-modules` names adapters served besides the base model
 * (vLLM's JSON form `{"name": ..., "path": ...}`, or `name=path`); a request naming one runs as that adapter, and
 * `vllm:lora_requests_info{max_lora, running_lora_adapters, waiting_lora_adapters}` reports, on every change, the
 * adapters with requests waiting and running, as a new series valued by the time of the change (vLLM's
 * `set_to_current_time`, so the newest series is the current state). Adapters are not loaded, unloaded or limited to
 * `--max-loras` slots: every adapter request runs like a base-model request.
 */
import { Gauge, type Registry } from 'prom-client';

export interface LoraModule {
  name: string;
  path: string;
}

/** Parses `--lora-modules` entries; throws naming the entry at fault. */
export function parseLoraModules(entries: readonly string[]): LoraModule[] {
  return entries.map((entry, i) => {
    const text = entry.trim();
    if (!text.startsWith('{')) {
      const eq = text.indexOf('=');
      if (eq <= 0)
        throw new Error(`--lora-modules[${i}]: "${entry}" is neither JSON ({"name": ..., "path": ...}) nor name=path`);
      return { name: text.slice(0, eq), path: text.slice(eq + 1) };
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new Error(`--lora-modules[${i}]: not valid JSON: ${(e as Error).message}`);
    }
    const o = typeof v === 'object' && v !== null ? (v as { name?: unknown; path?: unknown }) : {};
    if (typeof o.name !== 'string' || o.name === '')
      throw new Error(`--lora-modules[${i}]: needs a non-empty string "name"`);
    return { name: o.name, path: typeof o.path === 'string' ? o.path : '' };
  });
}

/** Label sets kept in the exposition: vLLM keeps every one; a bound keeps a long-running simulator's scrape small. */
const MAX_SERIES = 64;

export class LoraState {
  readonly modules: ReadonlyMap<string, LoraModule>;
  private readonly waiting = new Map<string, number>();
  private readonly running = new Map<string, number>();
  private readonly gauge: Gauge<'max_lora' | 'running_lora_adapters' | 'waiting_lora_adapters'>;
  private readonly series: Array<Record<'max_lora' | 'running_lora_adapters' | 'waiting_lora_adapters', string>> = [];
  private last = 0;

  constructor(
    modules: readonly LoraModule[],
    private readonly maxLoras: number,
    registry: Registry,
  ) {
    this.modules = new Map(modules.map((module) => [module.name, module]));
    this.gauge = new Gauge({
      name: 'vllm:lora_requests_info',
      help: 'Running stats on lora requests.',
      labelNames: ['max_lora', 'running_lora_adapters', 'waiting_lora_adapters'],
      registers: [registry],
    });
    this.report();
  }

  isLora(model: string): boolean {
    return this.modules.has(model);
  }

  /** A request for `lora` is queued (before admission). */
  enqueue(lora: string): void {
    bump(this.waiting, lora, 1);
    this.report();
  }

  /** The queued request was admitted and runs. */
  start(lora: string): void {
    bump(this.waiting, lora, -1);
    bump(this.running, lora, 1);
    this.report();
  }

  /** A queued request left before admission (client gone, queue full). */
  dequeue(lora: string): void {
    bump(this.waiting, lora, -1);
    this.report();
  }

  /** A running request ended. */
  finish(lora: string): void {
    bump(this.running, lora, -1);
    this.report();
  }

  private report(): void {
    const labels = {
      max_lora: String(this.maxLoras),
      running_lora_adapters: [...this.running.keys()].join(','),
      waiting_lora_adapters: [...this.waiting.keys()].join(','),
    };
    const at = this.series.findIndex(
      (existing) =>
        existing.running_lora_adapters === labels.running_lora_adapters &&
        existing.waiting_lora_adapters === labels.waiting_lora_adapters,
    );
    if (at >= 0) this.series.splice(at, 1);
    this.series.push(labels);
    if (this.series.length > MAX_SERIES) this.gauge.remove(this.series.shift()!);
    // Seconds with a fraction, as vLLM's time.time(), and strictly increasing: the newest value is the current state.
    this.last = Math.max(Date.now() / 1000, this.last + 1e-6);
    this.gauge.set(labels, this.last);
  }
}

function bump(counts: Map<string, number>, key: string, by: number): void {
  const n = (counts.get(key) ?? 0) + by;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}
