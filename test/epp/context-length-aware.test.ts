/**
 * context-length-aware (llm-d v0.7.1, llm-d-router): range labels parsed as upstream, the in-range and out-of-range
 * score curves (upstream's documented properties and exact values), filtering when enabled, parameters, and a config
 * routing short and long prompts to the pods labelled for them through the loader and the director.
 */
import { describe, expect, it } from 'vitest';
import {
  loadEndpointPickerConfig,
  PLUGIN_REGISTRY,
  type Endpoint,
  type Filter,
  type Scorer,
} from '../../src/epp/index.js';
import { contextRangeScore, parseContextRange } from '../../src/epp/plugins/scorer/context-length-aware.js';
import { harness, spec, storeWith } from './fixtures.js';
import { build, context, endpoint } from './plugin-build.js';

const LLMD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';
const LABEL = 'llm-d.ai/context-length-range';
const ranged = (range?: string, label = LABEL): Endpoint => endpoint(range === undefined ? {} : { [label]: range });
const round = (xs: ArrayLike<number>) => Array.from(xs).map((value) => Math.round(value * 1e6) / 1e6);

describe('context-length-aware', () => {
  it('parses "min-max" as upstream: trimmed integers, min <= max, exactly one dash', () => {
    expect(parseContextRange('0-100')).toEqual({ min: 0, max: 100 });
    expect(parseContextRange(' 10 - 20 ')).toEqual({ min: 10, max: 20 });
    expect(parseContextRange('+5-7')).toEqual({ min: 5, max: 7 });
    for (const bad of ['', '100', '1-2-3', '200-100', 'a-b', '1.5-2', '-5-10'])
      expect(parseContextRange(bad), bad).toBeUndefined();
  });

  it('in range: 0.3 + 0.7 × (0.7/(1 + width/10000) + 0.3 × headroom/width); width 0 → 1', () => {
    expect(round([contextRangeScore(1000, { min: 0, max: 2048 })])).toEqual([0.814167]);
    expect(contextRangeScore(5, { min: 5, max: 5 })).toBe(1);
    // Tighter ranges beat wider ones; more headroom beats less; every in-range score is above 0.3.
    expect(contextRangeScore(0, { min: 0, max: 20 })).toBeGreaterThan(contextRangeScore(0, { min: 0, max: 10000 }));
    expect(contextRangeScore(100, { min: 0, max: 1000 })).toBeGreaterThan(
      contextRangeScore(900, { min: 0, max: 1000 }),
    );
    expect(contextRangeScore(1_000_000, { min: 0, max: 1_000_000 })).toBeGreaterThan(0.3);
  });

  it('out of range: 0.3 / (1 + distance/1000), so a 9000-token request prefers max 8192 over max 2048', () => {
    expect(
      round([contextRangeScore(9000, { min: 0, max: 8192 }), contextRangeScore(9000, { min: 0, max: 2048 })]),
    ).toEqual([0.165929, 0.037726]);
    expect(contextRangeScore(10, { min: 100, max: 200 })).toBeGreaterThan(
      contextRangeScore(10, { min: 1000, max: 2000 }),
    );
  });

  it('scores: no label 0.5, malformed label 0 (upstream TestContextLengthAwareScore at context length 0)', () => {
    const s = build<Scorer>('context-length-aware', {});
    const scores = round(
      s.score(context({ tokenCount: 0 }), [
        ranged('0-20'),
        ranged('0-10000'),
        ranged('500-1000'),
        ranged(),
        ranged('oops'),
      ]),
    );
    expect(scores[0]).toBeGreaterThan(scores[1]);
    expect(scores[1]).toBeGreaterThan(0.3);
    expect(scores[2]).toBeGreaterThan(0);
    expect(scores[2]).toBeLessThan(0.3);
    expect(scores.slice(3)).toEqual([0.5, 0]);
  });

  it('filters only when enableFiltering: in range or unlabelled kept, malformed and out of range dropped', () => {
    const es = [ranged('0-100'), ranged('100-500'), ranged('0-2000'), ranged(), ranged('x-y')];
    const names = (xs: Endpoint[]) => xs.map((candidate) => candidate.name);
    expect(
      names(build<Filter>('context-length-aware', { enableFiltering: true }).filter(context({ tokenCount: 0 }), es)),
    ).toEqual(names([es[0], es[2], es[3]]));
    expect(
      names(build<Filter>('context-length-aware', { enableFiltering: true }).filter(context({ tokenCount: 300 }), es)),
    ).toEqual(names([es[1], es[2], es[3]]));
    expect(build<Filter>('context-length-aware', {}).filter(context({ tokenCount: 300 }), es)).toHaveLength(5);
  });

  it('a custom label; an empty label, an unknown or mistyped key is a load error naming the plugin and key', () => {
    const s = build<Scorer>('context-length-aware', { label: 'ctx' });
    expect(round(s.score(context({ tokenCount: 10 }), [ranged('0-10', 'ctx'), ranged('0-10')]))).toEqual([
      0.78951, 0.5,
    ]);
    const load = (params: string) => () =>
      loadEndpointPickerConfig(
        `${LLMD}plugins:\n- type: context-length-aware\n  parameters: ${params}\nschedulingProfiles: [{name: d, plugins: [{pluginRef: context-length-aware}]}]`,
      );
    expect(load("{label: ''}")).toThrow(
      /plugin "context-length-aware" \(type context-length-aware\): parameter "label": 'label' must be specified/,
    );
    expect(load('{enableFiltering: "yes"}')).toThrow(
      /plugin "context-length-aware" \(type context-length-aware\): parameter "enableFiltering"/,
    );
    expect(load('{labels: x}')).toThrow(/unknown parameter "labels"/);
    expect(PLUGIN_REGISTRY['context-length-aware'].params.parse({})).toEqual({ label: LABEL, enableFiltering: false });
  });

  it('in a profile it routes short prompts to the short-context pod and long prompts to the long-context one', () => {
    const config = `${LLMD}plugins:\n- type: context-length-aware\n  parameters: {enableFiltering: true}\n- type: queue-scorer\n- type: max-score-picker\nschedulingProfiles:\n- name: default\n  plugins: [{pluginRef: context-length-aware, weight: 8}, {pluginRef: queue-scorer}, {pluginRef: max-score-picker}]\n`;
    // The long-context pod is idle and the short one busy: the queue alone would send everything to the long one.
    const store = storeWith(
      [
        spec('short', '10.0.0.1', undefined, { [LABEL]: '0-2048' }),
        spec('long', '10.0.0.2', undefined, { [LABEL]: '2048-32768' }),
      ],
      { short: { waitingQueueSize: 9 } },
    );
    const h = harness(config, store);
    expect(h.route('hello there').result.results.get('default')!.targets[0].name).toBe('short');
    expect(h.route('x'.repeat(4 * 5000)).result.results.get('default')!.targets[0].name).toBe('long');
    expect(h.route('x'.repeat(4 * 5000)).ctx.request.tokenCount).toBe(5000);
  });
});
