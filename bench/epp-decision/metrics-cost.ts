/**
 * CPU per ext_proc request of the EPP's metric recording alone, per --metrics-family: everything one request records
 * (stream open and close, the request's series, scheduling attempt and latency, decision, processing time, response
 * size, latency, TTFT, tokens, NTPOT, TPOT), on one label set, as in steady state. CPU time (process.cpuUsage), so the
 * figure holds on a machine shared with other work.
 */
import { EppMetrics, type MetricsFamily } from '../../src/epp/metrics.js';

export function runMetricsCostBench(family: MetricsFamily, requests: number): number {
  const m = new EppMetrics(undefined, family);
  const plugin = { name: 'disagg-profile-handler', type: 'disagg-profile-handler' };
  const endpoint = { name: 'decode-0', namespace: 'default', port: 8000 };
  const one = () => {
    m.streamOpened();
    const s = m.request('model', 'model', 'default-flow');
    m.scheduled('model', endpoint, 0.0001);
    m.recordDecision(plugin, 'model', 'prefill-decode', 'above-threshold');
    s.accepted(4096);
    s.running.inc();
    m.requestProcessed(0.0002);
    s.responseSize.observe(2048);
    s.duration.observe(0.5);
    s.ttft(true, 0.1);
    s.usage(1024, 16, 512);
    s.ntpot.observe(0.03);
    s.tpot(0.01);
    s.running.dec();
    m.streamClosed('OK', 0.6);
  };
  for (let i = 0; i < Math.min(20_000, requests); i++) one();
  const c0 = process.cpuUsage();
  for (let i = 0; i < requests; i++) one();
  const c = process.cpuUsage(c0);
  return ((c.user + c.system) * 1000) / requests;
}
