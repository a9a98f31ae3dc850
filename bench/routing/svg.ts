/**
 * bench/routing's plots as one SVG, written by hand from the results (no plotting dependency): line panels of a
 * figure per router against the request rate, and a grouped-bar panel for the P/D variant.
 */

export interface Series {
  name: string;
  color: string;
  points: Array<{ x: number; y: number }>;
  dashed?: boolean;
}

export interface LinePanel {
  kind: 'lines';
  title: string;
  yLabel: string;
  xLabel: string;
  series: Series[];
  /** Format of the y-axis ticks. */
  format?: (value: number) => string;
}

export interface BarPanel {
  kind: 'bars';
  title: string;
  yLabel: string;
  /** One group per category (e.g. "TTFT p50 @ 8 req/s"), one bar per series in each. */
  groups: string[];
  series: Array<{ name: string; color: string; values: number[] }>;
  format?: (value: number) => string;
}

export type Panel = LinePanel | BarPanel;

const W = 520;
const H = 360;
const M = { left: 64, right: 16, top: 36, bottom: 96 };

const esc = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const num = (value: number) => (Math.round(value * 10) / 10).toString();

/** Round tick values covering [0, max]. */
function ticks(max: number): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / 5;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((mantissa) => mantissa * pow).find((candidate) => candidate >= raw) ?? raw;
  const out: number[] = [];
  for (let v = 0; v <= max + step * 0.999; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function axes(panel: Panel, yTicks: number[], sy: (y: number) => number): string[] {
  const fmt = panel.format ?? ((value: number) => String(value));
  const out = [
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(panel.title)}</text>`,
    `<text transform="translate(16 ${M.top + (H - M.top - M.bottom) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(panel.yLabel)}</text>`,
  ];
  for (const t of yTicks) {
    const y = num(sy(t));
    out.push(
      `<line x1="${M.left}" x2="${W - M.right}" y1="${y}" y2="${y}" stroke="#ddd"/>`,
      `<text x="${M.left - 6}" y="${y}" dy="4" text-anchor="end" font-size="11">${esc(fmt(t))}</text>`,
    );
  }
  out.push(
    `<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${H - M.bottom}" stroke="#333"/>`,
    `<line x1="${M.left}" x2="${W - M.right}" y1="${H - M.bottom}" y2="${H - M.bottom}" stroke="#333"/>`,
  );
  return out;
}

function legend(items: Array<{ name: string; color: string; dashed?: boolean }>): string[] {
  const out: string[] = [];
  let x = M.left;
  let y = H - M.bottom + 50;
  for (const item of items) {
    const width = 28 + item.name.length * 6.5;
    if (x + width > W - M.right) {
      x = M.left;
      y += 13;
    }
    out.push(
      `<line x1="${x}" x2="${x + 18}" y1="${y - 4}" y2="${y - 4}" stroke="${item.color}" stroke-width="3"${item.dashed ? ' stroke-dasharray="5 3"' : ''}/>`,
      `<text x="${x + 22}" y="${y}" font-size="11">${esc(item.name)}</text>`,
    );
    x += width;
  }
  return out;
}

function linePanel(panel: LinePanel): string[] {
  const xs = [...new Set(panel.series.flatMap((line) => line.points.map((point) => point.x)))].sort(
    (left, right) => left - right,
  );
  const yMax = Math.max(
    0,
    ...panel.series.flatMap((line) => line.points.map((point) => point.y)).filter(Number.isFinite),
  );
  const yTicks = ticks(yMax * 1.05);
  const top = yTicks[yTicks.length - 1];
  const sy = (value: number) => H - M.bottom - (value / top) * (H - M.top - M.bottom);
  // Rates are spread evenly (they usually double), labelled with their values.
  const sx = (rate: number) =>
    xs.length <= 1
      ? (M.left + W - M.right) / 2
      : M.left + 20 + (xs.indexOf(rate) / (xs.length - 1)) * (W - M.left - M.right - 40);
  const out = axes(panel, yTicks, sy);
  for (const rate of xs)
    out.push(`<text x="${num(sx(rate))}" y="${H - M.bottom + 16}" text-anchor="middle" font-size="11">${rate}</text>`);
  out.push(
    `<text x="${(M.left + W - M.right) / 2}" y="${H - M.bottom + 32}" text-anchor="middle" font-size="12">${esc(panel.xLabel)}</text>`,
  );
  for (const line of panel.series) {
    const pts = line.points.filter((point) => Number.isFinite(point.y)).sort((left, right) => left.x - right.x);
    if (pts.length === 0) continue;
    out.push(
      `<polyline fill="none" stroke="${line.color}" stroke-width="2"${line.dashed ? ' stroke-dasharray="5 3"' : ''} points="${pts.map((point) => `${num(sx(point.x))},${num(sy(point.y))}`).join(' ')}"/>`,
    );
    for (const point of pts)
      out.push(
        `<circle cx="${num(sx(point.x))}" cy="${num(sy(point.y))}" r="3" fill="${line.color}"><title>${esc(`${line.name}: ${point.y}`)}</title></circle>`,
      );
  }
  out.push(...legend(panel.series));
  return out;
}

function barPanel(panel: BarPanel): string[] {
  const yMax = Math.max(0, ...panel.series.flatMap((bars) => bars.values).filter(Number.isFinite));
  const yTicks = ticks(yMax * 1.05);
  const top = yTicks[yTicks.length - 1];
  const sy = (value: number) => H - M.bottom - (value / top) * (H - M.top - M.bottom);
  const out = axes(panel, yTicks, sy);
  const groupWidth = (W - M.left - M.right) / Math.max(1, panel.groups.length);
  const barWidth = (groupWidth * 0.8) / Math.max(1, panel.series.length);
  panel.groups.forEach((group, index) => {
    const x0 = M.left + index * groupWidth + groupWidth * 0.1;
    panel.series.forEach((bars, i) => {
      const v = bars.values[index];
      if (!Number.isFinite(v)) return;
      out.push(
        `<rect x="${num(x0 + i * barWidth)}" y="${num(sy(v))}" width="${num(barWidth - 2)}" height="${num(sy(0) - sy(v))}" fill="${bars.color}"><title>${esc(`${bars.name} ${group}: ${v}`)}</title></rect>`,
      );
    });
    out.push(
      `<text x="${num(x0 + groupWidth * 0.4)}" y="${H - M.bottom + 16}" text-anchor="middle" font-size="9">${esc(group)}</text>`,
    );
  });
  out.push(...legend(panel.series));
  return out;
}

/** The panels in a grid of `columns`, as one SVG document. */
export function renderSvg(title: string, subtitle: string, panels: Panel[], columns = 2): string {
  const rows = Math.ceil(panels.length / columns);
  const width = W * columns;
  const height = H * rows + 48;
  const body = panels.map((panel, i) => {
    const x = (i % columns) * W;
    const y = 48 + Math.floor(i / columns) * H;
    const inner = panel.kind === 'lines' ? linePanel(panel) : barPanel(panel);
    return `<g transform="translate(${x} ${y})">\n${inner.join('\n')}\n</g>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${width / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">${esc(title)}</text>
<text x="${width / 2}" y="40" text-anchor="middle" font-size="12" fill="#555">${esc(subtitle)}</text>
${body.join('\n')}
</svg>
`;
}
