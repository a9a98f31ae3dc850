import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers.js';
import { ProtoValidator } from './proto-validate.js';

const validator = new ProtoValidator([
  'envoy/config/bootstrap/v3/bootstrap.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/ext_proc/v3/ext_proc.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
]);

describe('deploy/envoy.yaml', () => {
  const doc = parse(readFileSync(path.join(ROOT, 'deploy/envoy.yaml'), 'utf8')) as Record<string, any>;

  it('is a valid Envoy v3 bootstrap, every field and @type known to the API', () => {
    expect(validator.validate('envoy.config.bootstrap.v3.Bootstrap', doc)).toEqual([]);
  });

  it('the validator does catch mistakes', () => {
    const broken = structuredClone(doc);
    const extProc = broken.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config;
    extProc.processing_mode.request_body_mode = 'FULL_DUPLEX';
    extProc.failure_mode_alow = true;
    broken.static_resources.clusters[0].connect_timeout = 10;
    const errors = validator.validate('envoy.config.bootstrap.v3.Bootstrap', broken);
    expect(errors.join('\n')).toContain('"FULL_DUPLEX" is not a value of envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.BodySendMode');
    expect(errors.join('\n')).toContain('no field "failure_mode_alow"');
    expect(errors.join('\n')).toContain('expected a duration');
  });

  it('asks the EPP with FULL_DUPLEX_STREAMED bodies and routes on x-gateway-destination-endpoint', () => {
    const hcm = doc.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    const extProc = hcm.http_filters[0].typed_config;
    expect(hcm.http_filters.map((field: { name: string }) => field.name)).toEqual(['envoy.filters.http.ext_proc', 'envoy.filters.http.router']);
    expect(extProc.processing_mode).toMatchObject({ request_body_mode: 'FULL_DUPLEX_STREAMED', response_body_mode: 'FULL_DUPLEX_STREAMED', request_header_mode: 'SEND' });
    expect(extProc.grpc_service.envoy_grpc.cluster_name).toBe('epp');
    const dst = doc.static_resources.clusters.find((config: { name: string }) => config.name === 'original_destination');
    expect(dst).toMatchObject({ type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', original_dst_lb_config: { use_http_header: true, http_header_name: 'x-gateway-destination-endpoint' } });
    const epp = doc.static_resources.clusters.find((config: { name: string }) => config.name === 'epp');
    expect(epp.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value).toBe(9002);
  });
});
