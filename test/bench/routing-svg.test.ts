/**
 * bench/routing's hand-written SVG: one panel per figure, points placed by value (higher y value, higher on the page),
 * rates spread in order, non-finite values left out, text escaped, and the document well formed.
 */
import { describe, expect, it } from 'vitest';
import { renderSvg, type Panel } from '../../bench/routing/svg.js';

const LINES: Panel = {
  kind: 'lines',
  title: 'hit rate <%> & more',
  yLabel: '%',
  xLabel: 'req/s',
  series: [
    {
      name: 'a',
      color: '#111111',
      points: [
        { x: 8, y: 40 },
        { x: 2, y: 10 },
        { x: 4, y: Number.NaN },
      ],
    },
    { name: 'ideal', color: '#000000', dashed: true, points: [{ x: 2, y: 20 }] },
  ],
};
const BARS: Panel = {
  kind: 'bars',
  title: 'P/D',
  yLabel: 's',
  groups: ['TTFT @2', 'E2E @2'],
  series: [
    { name: 'agg', color: '#222222', values: [1, 4] },
    { name: 'pd', color: '#333333', values: [2, Number.NaN] },
  ],
};

/** Every opening tag has its closing tag (self-closing ones aside). */
function balanced(svg: string): boolean {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-z]+)[^>]*?(\/?)>/g)) {
    if (m[3] === '/') continue;
    if (m[1] === '/') {
      if (stack.pop() !== m[2]) return false;
    } else stack.push(m[2]);
  }
  return stack.length === 0;
}

describe('bench/routing SVG', () => {
  const svg = renderSvg('title', 'simulated', [LINES, BARS]);

  it('is one well-formed SVG document with a group per panel', () => {
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(balanced(svg)).toBe(true);
    expect(svg.match(/<g transform=/g)).toHaveLength(2);
  });

  it('escapes text', () => {
    expect(svg).toContain('hit rate &lt;%&gt; &amp; more');
    expect(svg).not.toContain('<%>');
  });

  it('draws the finite points in rate order, a larger value higher up', () => {
    const line = /<polyline[^>]*stroke="#111111"[^>]*points="([^"]+)"/.exec(svg);
    expect(line).not.toBeNull();
    const pts = line![1].split(' ').map((pair) => pair.split(',').map(Number));
    expect(pts).toHaveLength(2); // the NaN point is left out
    expect(pts[0][0]).toBeLessThan(pts[1][0]); // rate 2 left of rate 8
    expect(pts[0][1]).toBeGreaterThan(pts[1][1]); // 10 below 40
    expect(svg).toMatch(/stroke="#000000"[^>]*stroke-dasharray/);
  });

  it('draws a bar per finite value', () => {
    expect(svg.match(/<rect x=/g)).toHaveLength(3);
  });
});
