/**
 * topology-extractor, topology-affinity-filter and topology-affinity-scorer (llm-d-router): the extractor's labels and
 * spec.hostname fallback, upstream's level comparison (a missing value never matches), the filter's two fail-open rules,
 * the scorer's fixed curve, parameter validation, and the prefill pick following the decode pick's host in a P/D
 * config run through the loader and the director.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/common/index.js';
import {
  PLUGIN_REGISTRY,
  loadEndpointPickerConfig,
  type Endpoint,
  type Filter,
  type SchedulingContext,
  type Scorer,
} from '../../src/epp/index.js';
import { compareTopology, type TopologyExtractor } from '../../src/epp/plugins/datalayer/topology-extractor.js';
import { fixtureText } from '../fixtures/upstream-configs/index.js';
import { harness, seeded, spec, storeWith } from './fixtures.js';
import { build, context, endpoint } from './plugin-build.js';

const LLMD = 'apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n';
const HOST = 'kubernetes.io/hostname';
const RACK = 'topology.kubernetes.io/rack';
const ZONE = 'topology.kubernetes.io/zone';
const REGION = 'topology.kubernetes.io/region';

const ep = (labels: Record<string, string>, hostname?: string) => endpoint(labels, {}, hostname);
function withPeer(peer: Endpoint | undefined): SchedulingContext {
  const c = context();
  c.peerEndpoint = peer;
  return c;
}

const full = { [HOST]: 'h1', [RACK]: 'r1', [ZONE]: 'z1', [REGION]: 'reg1' };

describe('topology-extractor', () => {
  const extractor = build<TopologyExtractor>('topology-extractor', {});

  it('reads the four well-known labels; no label and no spec.hostname → no topology', () => {
    expect(extractor.topologyOf(ep(full))).toEqual({ hostname: 'h1', rack: 'r1', zone: 'z1', region: 'reg1' });
    expect(extractor.topologyOf(ep({ [ZONE]: 'z1' }))).toEqual({ hostname: '', rack: '', zone: 'z1', region: '' });
    expect(extractor.topologyOf(ep({ other: 'x' }))).toBeUndefined();
  });

  it("falls back to the pod's spec.hostname when the hostname label is absent; the label wins when present", () => {
    expect(extractor.topologyOf(ep({ [ZONE]: 'z1' }, 'node-7'))?.hostname).toBe('node-7');
    expect(extractor.topologyOf(ep({}, 'node-7'))).toEqual({ hostname: 'node-7', rack: '', zone: '', region: '' });
    expect(extractor.topologyOf(ep({ [HOST]: 'labelled' }, 'node-7'))?.hostname).toBe('labelled');
  });

  it('custom label names; an empty name means the default', () => {
    const custom = build<TopologyExtractor>('topology-extractor', {
      hostname: 'my/host',
      rack: '',
      zone: 'my/zone',
      region: 'my/region',
    });
    expect(
      custom.topologyOf(ep({ 'my/host': 'h', [RACK]: 'r', 'my/zone': 'z', 'my/region': 'g', [HOST]: 'ignored' })),
    ).toEqual({ hostname: 'h', rack: 'r', zone: 'z', region: 'g' });
  });

  it('parameters are strict strings', () => {
    expect(PLUGIN_REGISTRY['topology-extractor'].params.safeParse({ host: 'x' }).success).toBe(false);
    expect(PLUGIN_REGISTRY['topology-extractor'].params.safeParse({ zone: 3 }).success).toBe(false);
  });
});

describe('compareTopology (upstream level.go)', () => {
  const t = (hostname = '', rack = '', zone = '', region = '') => ({ hostname, rack, zone, region });
  const peer = t('h1', 'r1', 'z1', 'reg1');
  it.each([
    ['same host', t('h1', 'r1', 'z1', 'reg1'), 'host'],
    ['same rack, other host', t('h2', 'r1', 'z1', 'reg1'), 'rack'],
    ['same zone, other rack', t('h2', 'r2', 'z1', 'reg1'), 'zone'],
    ['same region, other zone', t('h2', 'r2', 'z2', 'reg1'), 'region'],
    ['nothing shared', t('h2', 'r2', 'z2', 'reg2'), 'none'],
    ['candidate with only a rack', t('', 'r1'), 'rack'],
    ['candidate without topology', undefined, 'none'],
  ])('%s', (_name, candidate, level) => {
    expect(compareTopology(peer, candidate)).toBe(level);
  });
  it('a missing value never matches, not even a missing one', () => {
    expect(compareTopology(t(), t())).toBe('none');
    expect(compareTopology(t('', '', 'z'), t('', '', 'z'))).toBe('zone');
  });
});

describe('topology-affinity-filter', () => {
  const extractor = build<TopologyExtractor>('topology-extractor', {});
  const others = { 'topology-extractor': extractor };
  const peer = ep(full);
  const sameHost = ep(full);
  const sameRack = ep({ ...full, [HOST]: 'h2' });
  const sameZone = ep({ ...full, [HOST]: 'h2', [RACK]: 'r2' });
  const bare = ep({});
  const names = (es: Endpoint[]) => es.map((candidate) => candidate.name);

  it('keeps candidates at minAffinity or tighter (default host); a candidate without topology never qualifies', () => {
    const all = [sameHost, sameRack, sameZone, bare];
    expect(names(build<Filter>('topology-affinity-filter', {}, others).filter(withPeer(peer), all))).toEqual(
      names([sameHost]),
    );
    expect(
      names(build<Filter>('topology-affinity-filter', { minAffinity: 'rack' }, others).filter(withPeer(peer), all)),
    ).toEqual(names([sameHost, sameRack]));
    expect(
      names(build<Filter>('topology-affinity-filter', { minAffinity: 'region' }, others).filter(withPeer(peer), all)),
    ).toEqual(names([sameHost, sameRack, sameZone]));
  });

  it('fails open: no peer, a peer without topology, or no candidate qualifying keeps every candidate', () => {
    const f = build<Filter>('topology-affinity-filter', {}, others);
    const all = [sameRack, sameZone, bare];
    expect(names(f.filter(withPeer(undefined), all))).toEqual(names(all));
    expect(names(f.filter(withPeer(ep({})), all))).toEqual(names(all));
    expect(names(f.filter(withPeer(peer), all))).toEqual(names(all));
  });

  it('without a topology-extractor it keeps everything and says so at load', () => {
    const warnings: string[] = [];
    const f = build<Filter>('topology-affinity-filter', {}, {}, warnings);
    expect(f.filter(withPeer(peer), [sameZone, bare])).toHaveLength(2);
    expect(warnings).toEqual([
      'no topology-extractor named "topology-extractor" is configured: endpoints have no topology and the plugin keeps every candidate',
    ]);
  });

  it('parameters: minAffinity is a level ("" = host); topologyProducerName must name a topology-extractor', () => {
    const params = PLUGIN_REGISTRY['topology-affinity-filter'].params;
    expect(params.safeParse({ minAffinity: 'datacenter' }).success).toBe(false);
    expect(params.parse({ minAffinity: '' })).toMatchObject({ minAffinity: 'host' });
    expect(params.safeParse({ minAffinty: 'rack' }).success).toBe(false);
    expect(() => build('topology-affinity-filter', { topologyProducerName: 'nope' }, others)).toThrow(
      'parameter "topologyProducerName": no plugin named "nope" is configured',
    );
    expect(() =>
      build('topology-affinity-filter', { topologyProducerName: 'q' }, { q: { type: 'queue-scorer', name: 'q' } }),
    ).toThrow('"q" is a queue-scorer, not a topology-extractor');
  });
});

describe('topology-affinity-scorer', () => {
  const extractor = build<TopologyExtractor>('topology-extractor', {});
  const s = build<Scorer>('topology-affinity-scorer', {}, { 'topology-extractor': extractor });
  const peer = ep(full);
  const candidates = [
    ep(full),
    ep({ ...full, [HOST]: 'h2' }),
    ep({ [ZONE]: 'z1', [REGION]: 'reg1' }),
    ep({ [REGION]: 'reg1' }),
    ep({ [REGION]: 'reg2' }),
    ep({}),
  ];

  it("upstream's curve: host 1, rack 0.2, zone 0.05, region 0.02, none 0; candidate without topology 0", () => {
    expect(Array.from(s.score(withPeer(peer), candidates))).toEqual([1, 0.2, 0.05, 0.02, 0, 0]);
  });

  it('every candidate scores 0 without peer topology', () => {
    expect(Array.from(s.score(withPeer(undefined), candidates))).toEqual([0, 0, 0, 0, 0, 0]);
    expect(Array.from(s.score(withPeer(ep({})), candidates))).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('reads the extractor named by topologyProducerName', () => {
    const custom = build<TopologyExtractor>('topology-extractor', { hostname: 'node' });
    const named = build<Scorer>(
      'topology-affinity-scorer',
      { topologyProducerName: 'mine' },
      { mine: { ...custom, name: 'mine' } },
    );
    expect(Array.from(named.score(withPeer(ep({ node: 'a' })), [ep({ node: 'a' }), ep({ node: 'b' })]))).toEqual([
      1, 0,
    ]);
  });
});

describe('in a P/D config (the pd-topology sample)', () => {
  const config = fixtureText('llm-d-router-ebab687/deploy/config/pd-topology-epp-config.yaml');
  /** Long prompts, each different from the first character: every one is uncached, so each goes P/D. */
  const prompt = (i: number) => `${i} Tell me about the history of Rome in great detail. `.repeat(8);

  it('the prefill pick shares the decode pick’s host', () => {
    const store = storeWith([
      spec('p-a', '10.0.0.1', 'prefill', { [HOST]: 'node-a', [ZONE]: 'z' }),
      spec('p-b', '10.0.0.2', 'prefill', { [HOST]: 'node-b', [ZONE]: 'z' }),
      spec('d-a', '10.0.0.3', 'decode', { [HOST]: 'node-a', [ZONE]: 'z' }),
      spec('d-b', '10.0.0.4', 'decode', { [HOST]: 'node-b', [ZONE]: 'z' }),
    ]);
    const h = harness(config, store, seeded(3));
    const hostOf = (candidate: Endpoint) => candidate.labels[HOST];
    const decodes = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const r = h.route(prompt(i));
      const decode = r.result.results.get('decode')!.targets[0];
      const prefill = r.result.results.get('prefill')?.targets[0];
      expect(prefill, `request ${i}`).toBeDefined();
      expect(hostOf(prefill!), `request ${i}`).toBe(hostOf(decode));
      decodes.add(decode.name);
    }
    // Both hosts were exercised, so the co-location is not one lucky pairing.
    expect(decodes).toEqual(new Set(['d-a', 'd-b']));
  });

  it('a prefill pod on another host is still used when none shares the decode pick’s host (fails open)', () => {
    const store = storeWith([
      spec('p-b', '10.0.0.2', 'prefill', { [HOST]: 'node-b' }),
      spec('d-a', '10.0.0.3', 'decode', { [HOST]: 'node-a' }),
    ]);
    const r = harness(config, store).route(prompt(0));
    expect(r.result.results.get('prefill')?.targets[0]?.name).toBe('p-b');
  });

  it('an unknown or mistyped parameter fails the load naming the plugin and key', () => {
    const bad = (params: string) => () =>
      loadEndpointPickerConfig(
        `${LLMD}plugins:\n- type: topology-extractor\n- type: topology-affinity-filter\n  parameters: ${params}\n- type: decode-filter\nschedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: decode-filter\n  - pluginRef: topology-affinity-filter\n`,
      );
    expect(bad('{minAffinity: planet}')).toThrow(ConfigError);
    expect(bad('{minAffinity: planet}')).toThrow(
      /plugin "topology-affinity-filter" \(type topology-affinity-filter\): parameter "minAffinity"/,
    );
    expect(bad('{minAffnity: rack}')).toThrow(
      /plugin "topology-affinity-filter" \(type topology-affinity-filter\): unknown parameter "minAffnity"/,
    );
  });
});
