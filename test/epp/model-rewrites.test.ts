/**
 * InferenceModelRewrite and InferenceObjective without Kubernetes: validation of the objects' specs, GAIE's
 * precedence between rules and objects, the weighted pick, objective priorities, and what the Director does with them
 * (the forwarded body, the header's place in the precedence, the decision metric, the request's priority).
 */
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/index.js';
import { RequestDirector } from '../../src/epp/director.js';
import type { RequestPolicies } from '../../src/epp/datalayer/inference-crds.js';
import { ModelRewriteStore, parseModelRewrite, pickTarget, type ModelRewrite } from '../../src/epp/datalayer/model-rewrites.js';
import { ObjectiveStore, parseObjective } from '../../src/epp/datalayer/objectives.js';
import { EppMetrics, loadEndpointPickerConfig } from '../../src/epp/index.js';
import { metricValue } from '../helpers.js';
import { seeded, spec, storeWith } from './fixtures.js';

type Rule = { matches?: Array<{ model: { type?: string; value: string } }>; targets: Array<{ modelRewrite: string; weight?: number }> };

const exact = (...models: string[]) => models.map((value) => ({ model: { type: 'Exact', value } }));
const to = (...targets: Array<string | [string, number]>) => targets.map((t) => (typeof t === 'string' ? { modelRewrite: t } : { modelRewrite: t[0], weight: t[1] }));

function rewrite(name: string, createdAt: number, rules: Rule[]): ModelRewrite {
  const r = parseModelRewrite(name, createdAt, { rules });
  if ('error' in r) throw new Error(r.error);
  return r.rewrite;
}

const errorOf = (spec: unknown) => {
  const r = parseModelRewrite('bad', 0, spec);
  return 'error' in r ? r.error : undefined;
};

describe('InferenceModelRewrite validation', () => {
  it('accepts exact and generic rules, weighted or not', () => {
    const rw = rewrite('rw', 1000, [
      { matches: exact('a', 'b'), targets: to(['a-v1', 90], ['a-v2', 10]) },
      { targets: to('x', 'y') },
    ]);
    expect(rw.rules.map((r) => ({ models: r.models, targets: r.targets, cumulative: r.cumulative }))).toEqual([
      { models: ['a', 'b'], targets: [{ model: 'a-v1', weight: 90 }, { model: 'a-v2', weight: 10 }], cumulative: [90, 100] },
      { models: [], targets: [{ model: 'x', weight: undefined }, { model: 'y', weight: undefined }], cumulative: [] },
    ]);
    // The match type defaults to Exact (the CRD's default).
    expect(errorOf({ rules: [{ matches: [{ model: { value: 'a' } }], targets: to('b') }] })).toBeUndefined();
  });

  it.each([
    ['weights on some targets only', { rules: [{ targets: to(['a', 90], 'b') }] }, /spec\.rules\.0\.targets: weights are set on 1 of 2 targets; set them on all or none/],
    ['a zero weight', { rules: [{ targets: to(['a', 0]) }] }, /spec\.rules\.0\.targets\.0\.weight: weight must be between 1 and 1000000/],
    ['a weight above the maximum', { rules: [{ targets: to(['a', 1_000_001]) }] }, /weight must be between 1 and 1000000/],
    ['a fractional weight', { rules: [{ targets: to(['a', 1.5]) }] }, /spec\.rules\.0\.targets\.0\.weight: weight must be an integer/],
    ['a weight given as a string', { rules: [{ targets: [{ modelRewrite: 'a', weight: '5' }] }] }, /weight must be an integer/],
    ['an empty target model', { rules: [{ targets: to('') }] }, /spec\.rules\.0\.targets\.0\.modelRewrite: modelRewrite must not be empty/],
    ['a target without a model', { rules: [{ targets: [{ weight: 1 }] }] }, /spec\.rules\.0\.targets\.0\.modelRewrite: modelRewrite must be a string/],
    ['a rule without targets', { rules: [{ matches: exact('a') }] }, /spec\.rules\.0\.targets/],
    ['a rule with an empty target list', { rules: [{ matches: exact('a'), targets: [] }] }, /spec\.rules\.0\.targets: a rule needs at least one target/],
    ['an empty match value', { rules: [{ matches: exact(''), targets: to('b') }] }, /spec\.rules\.0\.matches\.0\.model\.value: match model value must not be empty/],
    ['a match type other than Exact', { rules: [{ matches: [{ model: { type: 'Prefix', value: 'a' } }], targets: to('b') }] }, /spec\.rules\.0\.matches\.0\.model\.type: match type must be Exact/],
    ['no rules', {}, /spec\.rules: rules must be a list/],
    ['no spec', undefined, /spec/],
  ])('rejects %s, naming the field', (_what, spec, message) => {
    expect(errorOf(spec)).toMatch(message);
  });
});

describe('InferenceModelRewrite precedence (GAIE)', () => {
  const decide = (s: ModelRewriteStore, model: string) => {
    const hit = s.ruleFor(model);
    return hit && `${hit.rewrite.name}:${hit.rule.targets.map((t) => t.model).join('+')}`;
  };

  it('an exact match beats a generic rule, even of an older object', () => {
    const s = new ModelRewriteStore();
    s.set(rewrite('old-generic', 1000, [{ targets: to('catch-all') }]));
    s.set(rewrite('new-exact', 5000, [{ matches: exact('food'), targets: to('food-v2') }]));
    expect(decide(s, 'food')).toBe('new-exact:food-v2');
    expect(decide(s, 'other')).toBe('old-generic:catch-all');
  });

  it('among exact matches (and among generic rules) the oldest object wins; deleting it hands over to the next', () => {
    const s = new ModelRewriteStore();
    s.set(rewrite('b-newer', 3000, [{ matches: exact('food'), targets: to('newer') }, { targets: to('generic-newer') }]));
    s.set(rewrite('a-older', 2000, [{ matches: exact('food'), targets: to('older') }, { targets: to('generic-older') }]));
    expect(decide(s, 'food')).toBe('a-older:older');
    expect(decide(s, 'x')).toBe('a-older:generic-older');
    expect(s.delete('a-older')).toBe(true);
    expect(decide(s, 'food')).toBe('b-newer:newer');
    expect(decide(s, 'x')).toBe('b-newer:generic-newer');
    expect(s.delete('a-older')).toBe(false);
  });

  it('objects created in the same second: the name breaks the tie, whatever the order they arrived in', () => {
    for (const order of [['zeta', 'alpha'], ['alpha', 'zeta']]) {
      const s = new ModelRewriteStore();
      for (const name of order) s.set(rewrite(name, 7000, [{ matches: exact('m'), targets: to(`${name}-target`) }]));
      expect(decide(s, 'm')).toBe('alpha:alpha-target');
    }
  });

  it('within one object the first matching rule in list order wins', () => {
    const s = new ModelRewriteStore();
    s.set(rewrite('rw', 1000, [{ matches: exact('a'), targets: to('first') }, { matches: exact('b', 'a'), targets: to('second') }, { targets: to('g1') }, { targets: to('g2') }]));
    expect(decide(s, 'a')).toBe('rw:first');
    expect(decide(s, 'b')).toBe('rw:second');
    expect(decide(s, 'c')).toBe('rw:g1');
  });

  it('an update replaces the object\'s rules and keeps its precedence by creation time', () => {
    const s = new ModelRewriteStore();
    s.set(rewrite('old', 1000, [{ matches: exact('m'), targets: to('v1') }]));
    s.set(rewrite('new', 2000, [{ matches: exact('m'), targets: to('other') }]));
    s.set(rewrite('old', 1000, [{ matches: exact('m'), targets: to('v2') }]));
    expect(decide(s, 'm')).toBe('old:v2');
    s.set(rewrite('old', 1000, [{ matches: exact('n'), targets: to('v3') }]));
    expect(decide(s, 'm')).toBe('new:other');
    expect(decide(s, 'n')).toBe('old:v3');
    expect([...s.configuredModels()].sort()).toEqual(['m', 'n', 'other', 'v3']);
  });

  it('no rule: no rewrite', () => {
    const s = new ModelRewriteStore();
    s.set(rewrite('rw', 1000, [{ matches: exact('a'), targets: to('b') }]));
    expect(s.decide('z', Math.random)).toBeUndefined();
  });
});

describe('weighted targets', () => {
  const count = (rule: Rule, n: number, random: () => number) => {
    const r = rewrite('rw', 0, [rule]).rules[0]!;
    const seen: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const t = pickTarget(r, random);
      seen[t] = (seen[t] ?? 0) + 1;
    }
    return seen;
  };

  it('splits in proportion to the weights (weights need not sum to 100)', () => {
    const seen = count({ targets: to(['stable', 9], ['canary', 1]) }, 20_000, seeded(7));
    expect(Math.abs(seen.canary! / 20_000 - 0.1)).toBeLessThan(0.01);
    const three = count({ targets: to(['a', 500], ['b', 300], ['c', 200]) }, 20_000, seeded(8));
    for (const [m, w] of [['a', 0.5], ['b', 0.3], ['c', 0.2]] as const) expect(Math.abs(three[m]! / 20_000 - w)).toBeLessThan(0.015);
  });

  it('without weights: evenly; the edges of the random range stay in range', () => {
    const seen = count({ targets: to('a', 'b', 'c', 'd') }, 20_000, seeded(9));
    for (const m of ['a', 'b', 'c', 'd']) expect(Math.abs(seen[m]! / 20_000 - 0.25)).toBeLessThan(0.015);
    const r = rewrite('rw', 0, [{ targets: to(['x', 1], ['y', 1]) }, { targets: to('p', 'q') }]).rules;
    expect([pickTarget(r[0]!, () => 0), pickTarget(r[0]!, () => 0.9999999999)]).toEqual(['x', 'y']);
    expect([pickTarget(r[1]!, () => 0), pickTarget(r[1]!, () => 0.9999999999)]).toEqual(['p', 'q']);
  });

  it('one target: no random draw', () => {
    const r = rewrite('rw', 0, [{ targets: to(['only', 5]) }]).rules[0]!;
    expect(pickTarget(r, () => { throw new Error('drawn'); })).toBe('only');
  });
});

describe('InferenceObjective', () => {
  it('priority by name; no priority, unknown objective or no header: 0; negative priorities are allowed', () => {
    const s = new ObjectiveStore();
    for (const [name, spec] of [['critical', { priority: 10 }], ['batch', { priority: -5 }], ['plain', {}]] as const) {
      const r = parseObjective(name, { ...spec, poolRef: { name: 'pool' } });
      if ('error' in r) throw new Error(r.error);
      s.set(r.objective);
    }
    expect(['critical', 'batch', 'plain', 'unknown', ''].map((o) => s.priority(o))).toEqual([10, -5, 0, 0, 0]);
  });

  it.each([
    ['a fractional priority', { priority: 1.5 }, /spec\.priority: priority must be an integer/],
    ['a priority beyond int32', { priority: 2 ** 31 }, /spec\.priority: priority must fit in 32 bits/],
    ['a string priority', { priority: 'high' }, /spec\.priority: priority must be an integer/],
  ])('rejects %s', (_what, spec, message) => {
    const r = parseObjective('o', spec);
    expect('error' in r && r.error).toMatch(message);
  });
});

describe('the Director with rewrites and objectives', () => {
  const CONFIG = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nschedulingProfiles: [{name: default}]\ndataLayer: {injectDefaults: false}\n';

  function director() {
    const metrics = new EppMetrics();
    const config = loadEndpointPickerConfig(CONFIG, { metrics, random: seeded() });
    const rewrites = new ModelRewriteStore();
    const objectives = new ObjectiveStore();
    const random = seeded(3);
    const policies: RequestPolicies = { rewrite: (m) => rewrites.decide(m, random), priority: (o) => objectives.priority(o) };
    const d = new RequestDirector(config, storeWith([spec('d0', '127.0.0.2')]), metrics, silentLogger(), policies);
    let n = 0;
    const parse = (model: string, headers: Record<string, string> = {}) => {
      const p = d.parse(`r${++n}`, { ':path': '/v1/completions', ...headers }, Buffer.from(JSON.stringify({ model, prompt: 'hi', max_tokens: 1 })));
      return { target: p.request.targetModel, forwarded: JSON.parse(p.body.toString()).model as string, priority: p.request.priority, request: p.request };
    };
    return { d, metrics, rewrites, objectives, parse };
  }

  it('without a matching rule the rewrite header still works; a rule on the body\'s model overrides the header (as llm-d-router)', () => {
    const t = director();
    expect(t.parse('food', { 'x-llm-d-model-name-rewrite': 'by-header' })).toMatchObject({ target: 'by-header', forwarded: 'by-header' });
    expect(t.parse('food', { 'x-gateway-model-name-rewrite': 'by-old-header' })).toMatchObject({ target: 'by-old-header', forwarded: 'by-old-header' });
    t.rewrites.set(rewrite('alias', 1000, [{ matches: exact('food'), targets: to('food-v2') }]));
    expect(t.parse('food')).toMatchObject({ target: 'food-v2', forwarded: 'food-v2' });
    expect(t.parse('food', { 'x-llm-d-model-name-rewrite': 'by-header' })).toMatchObject({ target: 'food-v2', forwarded: 'food-v2' });
    // The rule matches the body's model, not the header's target.
    expect(t.parse('other', { 'x-llm-d-model-name-rewrite': 'food' })).toMatchObject({ target: 'food', forwarded: 'food' });
    expect(t.parse('other')).toMatchObject({ target: 'other', forwarded: 'other' });
  });

  it('a rule rewriting a model to itself leaves the body\'s bytes as they came', () => {
    const t = director();
    t.rewrites.set(rewrite('same', 1000, [{ matches: exact('food'), targets: to('food') }]));
    const raw = Buffer.from('{"model":"food",  "prompt":"hi"}');
    const p = t.d.parse('r', { ':path': '/v1/completions' }, raw);
    expect(p.body).toBe(raw);
  });

  it('counts each decision in both families, by rewrite, model and target', async () => {
    const t = director();
    t.rewrites.set(rewrite('canary', 1000, [{ matches: exact('food'), targets: to(['food-v1', 1], ['food-v2', 1]) }]));
    const targets: Record<string, number> = {};
    for (let i = 0; i < 40; i++) {
      const { target } = t.parse('food');
      targets[target] = (targets[target] ?? 0) + 1;
    }
    t.parse('unmatched');
    const text = await t.metrics.registry.metrics();
    for (const name of ['inference_extension_model_rewrite_decisions_total', 'llm_d_epp_model_rewrite_decisions_total']) {
      for (const target of ['food-v1', 'food-v2']) expect(metricValue(text, name, { model_rewrite_name: 'canary', model_name: 'food', target_model: target }), `${name} ${target}`).toBe(targets[target]);
      expect(metricValue(text, name, { model_name: 'unmatched' })).toBeUndefined();
    }
  });

  it('the objective header names the priority (current and deprecated header names)', () => {
    const t = director();
    t.objectives.set({ name: 'critical', priority: 10 });
    expect(t.parse('m', { 'x-llm-d-inference-objective': 'critical' })).toMatchObject({ priority: 10 });
    expect(t.parse('m', { 'x-gateway-inference-objective': 'critical' })).toMatchObject({ priority: 10 });
    expect(t.parse('m', { 'x-gateway-inference-objective': 'nope' })).toMatchObject({ priority: 0 });
    expect(t.parse('m')).toMatchObject({ priority: 0 });
  });

  it('configured model names keep their metric label however many other names clients send', async () => {
    const m = new EppMetrics();
    for (let i = 0; i < 150; i++) m.request(`client-${i}`, `client-${i}`).total.inc();
    m.pinModelNames(['configured']);
    m.request('configured', 'configured').total.inc();
    m.modelRewriteDecision('rw', 'configured', 'configured');
    m.modelRewriteDecision('rw', 'client-149', 'configured');
    const text = await m.registry.metrics();
    expect(metricValue(text, 'llm_d_epp_request_total', { model_name: 'client-149' })).toBeUndefined();
    expect(metricValue(text, 'llm_d_epp_request_total', { model_name: 'configured', target_model_name: 'configured' })).toBe(1);
    expect(metricValue(text, 'llm_d_epp_model_rewrite_decisions_total', { model_name: 'configured' })).toBe(1);
    expect(metricValue(text, 'llm_d_epp_model_rewrite_decisions_total', { model_name: 'other' })).toBe(1);
  });
});
