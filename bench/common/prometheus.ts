/** Reading counters and histograms from a component's Prometheus text, for benchmarks. */

export interface PromSample {
  labels: Record<string, string>;
  value: number;
}

/** Every sample of the series `name` (exact name; comment lines and other series skipped). */
export function samplesOf(text: string, name: string): PromSample[] {
  const out: PromSample[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    let valueText: string;
    if (rest.startsWith('{')) {
      const close = rest.lastIndexOf('}');
      labels = Object.fromEntries(
        [...rest.slice(1, close).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((match) => [match[1], match[2]]),
      );
      valueText = rest.slice(close + 1);
    } else if (rest.startsWith(' ')) {
      valueText = rest;
    } else {
      continue;
    }
    out.push({ labels, value: Number(valueText.trim().split(' ')[0]) });
  }
  return out;
}

/** Sums the samples of `name` by the value of one label. */
export function sumBy(text: string, name: string, label: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of samplesOf(text, name)) {
    const k = s.labels[label] ?? '';
    out.set(k, (out.get(k) ?? 0) + s.value);
  }
  return out;
}

export async function scrape(url: string): Promise<string> {
  return (await fetch(url, { signal: AbortSignal.timeout(5_000) })).text();
}
