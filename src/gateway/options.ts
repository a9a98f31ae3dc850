/**
 * `pd-router gateway` flags. The gateway plays Envoy's part for machines without Envoy: a development and test tool.
 * Production runs Envoy (deploy/envoy.yaml) or a Gateway API implementation with InferencePool support.
 */
import {
  defaultValues,
  loggingOptions,
  opt,
  parseTarget,
  shutdownOptions,
  tracingOptions,
  type CommandDefinition,
  type OptionValues,
} from '../common/index.js';

/** The gateway's flag table. */
export const gatewayOptions = {
  port: opt.int({ default: 8080, min: 0, max: 65535, description: 'HTTP port clients send OpenAI requests to.' }),
  host: opt.string({ default: '0.0.0.0', description: 'Address to listen on.' }),
  epp: opt.string({
    default: '127.0.0.1:9002',
    description:
      "The EPP's ext_proc address (host:port), or several replicas' comma-separated: each request asks the one that answered last first, and moves on to the next when one is unavailable or answers as a follower (503 rejected-not-leader), as Envoy does over a Service's endpoints.",
  }),
  eppRetryTimeout: opt.duration({
    default: 0,
    description:
      'How long a request may keep asking the --epp replicas again (backing off from 50ms to 1s between rounds) when none answered as a leader: cover a leader handover (under a second on SIGTERM, up to the lease duration on a crash). 0: each replica once.',
  }),
  eppTls: opt.bool({ default: true, description: 'Use TLS to the EPP (its --secure-serving defaults to true).' }),
  eppTlsInsecureSkipVerify: opt.bool({
    default: true,
    description: "Accept the EPP's self-signed certificate, as Envoy configs for the EPP do.",
  }),
  failureModeAllow: opt.bool({
    default: false,
    description:
      "Envoy's failure_mode_allow: when the EPP fails, route to --fallback-endpoints (fail-open) instead of answering 500 (fail-closed).",
  }),
  fallbackEndpoints: opt.list({
    default: [],
    description: 'host:port endpoints used round-robin when the EPP is down and --failure-mode-allow is set.',
  }),
  eppMessageTimeout: opt.duration({
    default: 600_000,
    min: 1,
    description:
      "Envoy's message_timeout: how long to wait for each EPP answer before treating the EPP as failed (and asking the next replica). As deploy/envoy.yaml (llm-d's samples: 1000s): a request may wait in the EPP's flow-control queue until its TTL, and a shorter timeout would cut it out of its queue with a 500.",
  }),
  responseBodyMode: opt.oneOf(['streamed', 'none'] as const, {
    default: 'streamed',
    description: 'Send response bodies to the EPP (FULL_DUPLEX_STREAMED, so it can count usage) or not (NONE).',
  }),
  maxRequestBodySize: opt.bytes({
    default: 32 * 1024 * 1024,
    min: 1024,
    description: 'Largest request body accepted; 413 beyond it.',
  }),
  requestBodyTimeout: opt.duration({
    default: 60_000,
    min: 1,
    description: "Longest pause while reading a client's request body; 408 beyond it (a stalled upload).",
  }),
  upstreamConnectTimeout: opt.duration({
    default: 10_000,
    min: 1,
    description: 'Deadline for connecting to the chosen endpoint.',
  }),
  upstreamFirstByteTimeout: opt.duration({
    default: 600_000,
    min: 1,
    description: "Deadline for the first byte of the endpoint's answer; 504 beyond it.",
  }),
  upstreamIdleTimeout: opt.duration({
    default: 300_000,
    min: 1,
    description: "Longest pause between chunks of the endpoint's answer.",
  }),
  ...tracingOptions,
  ...shutdownOptions,
  ...loggingOptions,
};

/** The gateway's options, parsed. */
export type GatewayConfig = OptionValues<typeof gatewayOptions>;

/** `pd-router gateway`: the command, its options and its start function. */
export const gatewayCommand: CommandDefinition<typeof gatewayOptions> = {
  name: 'gateway',
  summary:
    'Development/test stand-in for Envoy: asks the EPP over ext_proc where to send each request, then proxies it.',
  description: `Speaks Envoy's ext_proc protocol to the EPP with FULL_DUPLEX_STREAMED request and response bodies, applies its
header mutations, routes to the endpoint in the envoy.lb x-gateway-destination-endpoint metadata (or header), relays
immediate responses, and streams the answer back. Production uses Envoy (deploy/envoy.yaml) or a Gateway API
implementation with InferencePool support; this gateway is for laptops, tests and tuning runs.`,
  options: gatewayOptions,
  envPrefix: 'PD_GATEWAY',
  validate: (optionValues) => {
    const problems: string[] = [];
    // host:port without a scheme (the gateway dials them as given).
    const isHostPort = (text: string) => !text.includes('://') && parseTarget(text) !== undefined;
    for (const e of eppAddresses(optionValues.epp))
      if (!isHostPort(e)) problems.push(`invalid value "${e}" for --epp: expected host:port`);
    if (eppAddresses(optionValues.epp).length === 0) problems.push('--epp needs at least one host:port');
    for (const e of optionValues.fallbackEndpoints)
      if (!isHostPort(e)) problems.push(`invalid value "${e}" for --fallback-endpoints: expected host:port`);
    return problems;
  },
};

/** The replicas of --epp (comma-separated). */
export function eppAddresses(epp: string): string[] {
  return epp
    .split(',')
    .map((address) => address.trim())
    .filter(Boolean);
}

/** Parses the gateway's options from a command line (tests and `pd-router dev`). */
export function gatewayConfig(overrides: Partial<GatewayConfig> = {}): GatewayConfig {
  return { ...defaultValues(gatewayOptions), ...overrides };
}
