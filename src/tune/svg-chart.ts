/**
 * Line charts as standalone SVG: labelled axes with round tick values, one coloured series per topology (points joined
 * in load order, each optionally labelled, e.g. with its concurrency), a legend, optional highlighted points (the
 * Pareto front), horizontal reference lines (SLOs) and one marked point (the recommendation). No dependencies; any
 * browser or image viewer shows the files.
 */

export interface ChartPoint {
  x: number;
  y: number;
  /** Written next to the point (e.g. "c=8" for concurrency 8). */
  label?: string;
}

export interface ReferenceLine {
  /** Horizontal line at this y (the y range always includes it). */
  y: number;
  label: string;
}

export interface MarkedPoint extends ChartPoint {
  /** Legend text, e.g. "recommended: 2P1D at concurrency 8". */
  label: string;
}

export interface ChartSeries {
  name: string;
  points: ChartPoint[];
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: ChartSeries[];
  /** Points drawn as rings on top (e.g. the Pareto front). */
  highlight?: ChartPoint[];
  highlightLabel?: string;
  /** Dashed horizontal lines, e.g. an SLO. */
  referenceLines?: ReferenceLine[];
  /** One point drawn as a star, with its own legend entry (the recommended shape at its goodput load). */
  marked?: MarkedPoint;
  width?: number;
  height?: number;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22', '#393b79', '#637939'];

const esc = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Round tick values covering [lo, hi]: steps of 1, 2 or 5 × 10^k. */
export function niceTicks(lo: number, hi: number, target = 6): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1];
  if (hi <= lo) hi = lo === 0 ? 1 : lo * 1.1 + 1e-9;
  const raw = (hi - lo) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((ms) => ms * mag).find((seconds) => seconds >= raw) ?? 10 * mag;
  const start = Math.floor(lo / step) * step;
  const ticks: number[] = [];
  for (let v = start; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1]! < hi) ticks.push(Number((ticks[ticks.length - 1]! + step).toPrecision(12)));
  return ticks;
}

function fmtTick(value: number): string {
  if (value === 0) return '0';
  const a = Math.abs(value);
  if (a >= 1e6) return `${Number((value / 1e6).toPrecision(3))}M`;
  if (a >= 1e4) return `${Number((value / 1e3).toPrecision(3))}k`;
  if (a >= 100) return String(Math.round(value));
  return String(Number(value.toPrecision(3)));
}

export function renderLineChart(spec: ChartSpec): string {
  const W = spec.width ?? 960;
  const H = spec.height ?? 580;
  const legendW = 260;
  const m = { top: 56, right: legendW + 24, bottom: 70, left: 86 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const all = spec.series.flatMap((chartSeries) => chartSeries.points).filter((chartPoint) => Number.isFinite(chartPoint.x) && Number.isFinite(chartPoint.y));
  const xs = niceTicks(Math.min(0, ...all.map((chartPoint) => chartPoint.x)), Math.max(...all.map((chartPoint) => chartPoint.x), 0) || 1);
  const refYs = (spec.referenceLines ?? []).map((line) => line.y).filter(Number.isFinite);
  const ys = niceTicks(Math.min(0, ...all.map((chartPoint) => chartPoint.y), ...refYs), Math.max(...all.map((chartPoint) => chartPoint.y), ...refYs, 0) || 1);
  const [x0, x1, y0, y1] = [xs[0]!, xs[xs.length - 1]!, ys[0]!, ys[ys.length - 1]!];
  const sx = (value: number) => m.left + ((value - x0) / (x1 - x0 || 1)) * pw;
  const sy = (value: number) => m.top + ph - ((value - y0) / (y1 - y0 || 1)) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="30" font-size="19" font-weight="bold" text-anchor="middle">${esc(spec.title)}</text>`);
  for (const t of xs) {
    out.push(`<line x1="${sx(t)}" y1="${m.top}" x2="${sx(t)}" y2="${m.top + ph}" stroke="#e6e6e6"/>`);
    out.push(`<text x="${sx(t)}" y="${m.top + ph + 20}" font-size="13" text-anchor="middle" fill="#333">${fmtTick(t)}</text>`);
  }
  for (const t of ys) {
    out.push(`<line x1="${m.left}" y1="${sy(t)}" x2="${m.left + pw}" y2="${sy(t)}" stroke="#e6e6e6"/>`);
    out.push(`<text x="${m.left - 8}" y="${sy(t) + 4}" font-size="13" text-anchor="end" fill="#333">${fmtTick(t)}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${H - 22}" font-size="15" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  out.push(`<text x="22" y="${m.top + ph / 2}" font-size="15" text-anchor="middle" transform="rotate(-90 22 ${m.top + ph / 2})">${esc(spec.yLabel)}</text>`);
  spec.series.forEach((chartSeries, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const pts = chartSeries.points.filter((chartPoint) => Number.isFinite(chartPoint.x) && Number.isFinite(chartPoint.y));
    if (pts.length > 1) out.push(`<polyline fill="none" stroke="${color}" stroke-width="2.2" points="${pts.map((chartPoint) => `${sx(chartPoint.x).toFixed(1)},${sy(chartPoint.y).toFixed(1)}`).join(' ')}"/>`);
    for (const p of pts) {
      out.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="4" fill="${color}"/>`);
      if (p.label) out.push(`<text class="point-label" x="${(sx(p.x) + 6).toFixed(1)}" y="${(sy(p.y) - 7).toFixed(1)}" font-size="11" fill="${color}">${esc(p.label)}</text>`);
    }
    const ly = m.top + 10 + i * 24;
    out.push(`<line x1="${W - legendW}" y1="${ly}" x2="${W - legendW + 26}" y2="${ly}" stroke="${color}" stroke-width="3"/>`);
    out.push(`<circle cx="${W - legendW + 13}" cy="${ly}" r="4" fill="${color}"/>`);
    out.push(`<text x="${W - legendW + 34}" y="${ly + 5}" font-size="14">${esc(chartSeries.name)}</text>`);
  });
  // Extra legend rows below the series.
  let row = spec.series.length;
  const legendY = () => m.top + 10 + row++ * 24 + 8;
  if (spec.highlight?.length) {
    for (const p of spec.highlight) out.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="9" fill="none" stroke="#000" stroke-width="1.6"/>`);
    const ly = legendY();
    out.push(`<circle cx="${W - legendW + 13}" cy="${ly}" r="8" fill="none" stroke="#000" stroke-width="1.6"/>`);
    out.push(`<text x="${W - legendW + 34}" y="${ly + 5}" font-size="14">${esc(spec.highlightLabel ?? 'highlighted')}</text>`);
  }
  for (const l of spec.referenceLines ?? []) {
    if (!Number.isFinite(l.y)) continue;
    const y = sy(l.y).toFixed(1);
    out.push(`<line class="reference-line" x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#c00" stroke-width="1.5" stroke-dasharray="7 5"/>`);
    out.push(`<text x="${m.left + pw - 6}" y="${(sy(l.y) - 6).toFixed(1)}" font-size="12" text-anchor="end" fill="#c00">${esc(l.label)}</text>`);
    const ly = legendY();
    out.push(`<line x1="${W - legendW}" y1="${ly}" x2="${W - legendW + 26}" y2="${ly}" stroke="#c00" stroke-width="1.5" stroke-dasharray="7 5"/>`);
    out.push(`<text x="${W - legendW + 34}" y="${ly + 5}" font-size="14">${esc(l.label)}</text>`);
  }
  if (spec.marked && Number.isFinite(spec.marked.x) && Number.isFinite(spec.marked.y)) {
    const star = (cx: number, cy: number, rate: number) =>
      Array.from({ length: 10 }, (_, i) => {
        const a = (Math.PI / 5) * i - Math.PI / 2;
        const rr = i % 2 === 0 ? rate : rate * 0.45;
        return `${(cx + rr * Math.cos(a)).toFixed(1)},${(cy + rr * Math.sin(a)).toFixed(1)}`;
      }).join(' ');
    out.push(`<polygon class="marked-point" points="${star(sx(spec.marked.x), sy(spec.marked.y), 13)}" fill="#ffd400" fill-opacity="0.85" stroke="#000" stroke-width="1.4"/>`);
    const ly = legendY();
    out.push(`<polygon points="${star(W - legendW + 13, ly, 9)}" fill="#ffd400" stroke="#000" stroke-width="1.2"/>`);
    out.push(`<text x="${W - legendW + 34}" y="${ly + 5}" font-size="14">${esc(spec.marked.label)}</text>`);
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
