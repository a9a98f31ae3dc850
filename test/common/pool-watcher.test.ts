/**
 * The PoolWatcher's object handling without an API server: pool specs (GA and v1alpha2), pod endpoints, selectors.
 * Its list and watch against a real kube-apiserver are tested in test/interop/kube-discovery.test.ts and
 * test/interop/kube-watch-expiry.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type * as k8s from '@kubernetes/client-node';
import { labelSelectorString, parseSelector, podEndpoints, poolSpecOf } from '../../src/common/kubernetes/pool-watcher.js';
import { endpointSpecsFromPods } from '../../src/epp/datalayer/kubernetes-discovery.js';

const pod = (options: { ip?: string; ready?: boolean; deleting?: boolean; annotations?: Record<string, string> } = {}): k8s.V1Pod => ({
  metadata: { name: 'p', namespace: 'ns', labels: { app: 'x' }, annotations: options.annotations, ...(options.deleting ? { deletionTimestamp: new Date() } : {}) },
  status: { podIP: options.ip ?? '10.0.0.1', conditions: [{ type: 'Ready', status: options.ready === false ? 'False' : 'True' }] },
});

describe('pool specs', () => {
  it('GA (selector.matchLabels, targetPorts) and v1alpha2 (flat selector, targetPortNumber); unusable specs give none', () => {
    expect(poolSpecOf({ spec: { selector: { matchLabels: { app: 'x' } }, targetPorts: [{ number: 8000 }, { number: 8001 }] } })).toEqual({ selector: { app: 'x' }, ports: [8000, 8001] });
    expect(poolSpecOf({ spec: { selector: { app: 'x' }, targetPortNumber: 8000 } })).toEqual({ selector: { app: 'x' }, ports: [8000] });
    expect(poolSpecOf({ spec: { selector: { matchLabels: {} }, targetPorts: [{ number: 1 }] } })).toBeUndefined();
    expect(poolSpecOf({})).toBeUndefined();
  });

  it('selectors: parsed from key=value terms, rendered sorted', () => {
    expect(parseSelector('b=2, a==1')).toEqual({ b: '2', a: '1' });
    expect(labelSelectorString({ b: '2', a: '1' })).toBe('a=1,b=2');
    expect(() => parseSelector('a in (1,2)')).toThrow(/unsupported label selector term/);
    expect(() => parseSelector(' , ')).toThrow(/empty label selector/);
  });
});

describe('pod endpoints', () => {
  it('one per target port; readiness from the Ready condition and deletionTimestamp; no IP, no endpoint', () => {
    expect(podEndpoints(pod(), [8000, 8001]).map((podEndpoint) => `${podEndpoint.podKey} ${podEndpoint.address}:${podEndpoint.port} ${podEndpoint.ready}`)).toEqual(['ns/p 10.0.0.1:8000 true', 'ns/p 10.0.0.1:8001 true']);
    expect(podEndpoints(pod({ ready: false }), [8000])[0]!.ready).toBe(false);
    expect(podEndpoints(pod({ deleting: true }), [8000])[0]!.ready).toBe(false);
    expect(podEndpoints({ ...pod(), status: {} }, [8000])).toEqual([]);
  });

  it('the llm-d.ai/active-ports annotation (or the legacy inference.networking.k8s.io one) restricts the ports', () => {
    expect(podEndpoints(pod({ annotations: { 'llm-d.ai/active-ports': '8001, 9' } }), [8000, 8001]).map((podEndpoint) => podEndpoint.port)).toEqual([8001]);
    expect(podEndpoints(pod({ annotations: { 'inference.networking.k8s.io/active-ports': '8000' } }), [8000, 8001]).map((podEndpoint) => podEndpoint.port)).toEqual([8000]);
  });

  it("carry the pod's spec.hostname when set (topology-extractor's host fallback), through to the endpoint specs", () => {
    const named = { ...pod(), spec: { containers: [], hostname: 'vllm-0' } };
    expect(podEndpoints(named, [8000])[0]!.hostname).toBe('vllm-0');
    expect(endpointSpecsFromPods(podEndpoints(named, [8000, 8001])).map((endpointSpec) => `${endpointSpec.name} ${endpointSpec.hostname}`)).toEqual(['p-rank-0 vllm-0', 'p-rank-1 vllm-0']);
    expect('hostname' in podEndpoints(pod(), [8000])[0]!).toBe(false);
  });
});
