/**
 * `pd-router dev` (what `npm start` runs): the whole P/D path on this machine, on simulators, without Kubernetes or GPUs.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  defineCommand,
  loggingOptions,
  opt,
  parentWatchOptions,
  shutdownOptions,
  type CommandDefinition,
} from '../common/index.js';
import { FAILURE_POLICIES } from '../sidecar/options.js';
import { DECIDERS } from './epp-configs.js';
import { LATENCY_PROFILES, PROFILE_NAMES } from './profiles.js';
import { prometheusScrapeConfig } from './prometheus.js';
import { DEV_STACK_DEFAULTS as D, startDevStack, type DevStack } from './stack.js';

const devOptions = {
  encode: opt.int({
    default: D.encode,
    min: 0,
    max: 32,
    description:
      'Encoder simulators (E/P/D): multimodal chat requests are first encoded there (sidecars run --ec-connector ec-nixl); 0: none.',
  }),
  prefill: opt.int({ default: D.prefill, min: 1, max: 32, description: 'Prefill simulators (x in xPyD).' }),
  decode: opt.int({
    default: D.decode,
    min: 1,
    max: 32,
    description: 'Decode simulators, each with its own sidecar (y in xPyD).',
  }),
  profile: opt.oneOf(PROFILE_NAMES, {
    default: D.profile,
    description: `Simulator latency profile: ${PROFILE_NAMES.map((path) => `${path} (${LATENCY_PROFILES[path].description})`).join('; ')}.`,
  }),
  model: opt.string({ default: D.model, description: 'Model name the simulators serve.' }),
  host: opt.string({ default: D.host, description: 'Address every component binds to.' }),
  port: opt.int({
    default: D.gatewayPort,
    min: 0,
    max: 65535,
    description: 'Gateway port, where clients send OpenAI requests.',
  }),
  basePort: opt.int({
    default: D.basePort,
    min: 0,
    max: 65000,
    description:
      'Prefill simulators listen on base+i, decode simulators on base+100+i, sidecars on base+200+i; 0 picks free ports for everything (EPP included).',
  }),
  eppGrpcPort: opt.int({
    default: D.eppGrpcPort,
    min: 1,
    max: 65535,
    description: 'EPP ext_proc port (health on the next port).',
  }),
  eppMetricsPort: opt.int({ default: D.eppMetricsPort, min: 1, max: 65535, description: 'EPP metrics port.' }),
  decider: opt.oneOf(DECIDERS, {
    default: D.decider,
    description:
      'Prefill decider: prefix (prefix-based-pd-decider), always, cost (cost-based-pd-decider), never (decode-only).',
  }),
  nonCachedTokens: opt.int({
    default: D.nonCachedTokens,
    min: 0,
    description: 'prefix decider threshold: uncached prompt tokens needed to disaggregate.',
  }),
  eppConfig: opt.string({ default: '', description: 'EndpointPickerConfig file to use instead of the generated one.' }),
  inProcess: opt.bool({
    default: false,
    description: 'Run every component in this process instead of one process each.',
  }),
  timeScale: opt.number({
    default: D.timeScale,
    min: 0,
    description: 'Simulator time scale (0.1 runs ten times faster than real time).',
  }),
  seed: opt.int({ default: D.seed, min: 0, description: 'Seed for the simulators.' }),
  failureModeAllow: opt.bool({
    default: D.failureModeAllow,
    description: 'Gateway fails open (to the decode sidecars) when the EPP is down.',
  }),
  prefillFailurePolicy: opt.oneOf(FAILURE_POLICIES, {
    default: D.prefillFailurePolicy,
    description: 'Sidecar prefill failure policy.',
  }),
  prometheus: opt.bool({
    default: false,
    description:
      'Write a Prometheus scrape config for this stack to --prometheus-file and print how to run Prometheus with it.',
  }),
  prometheusFile: opt.string({
    default: 'pd-router-prometheus.yml',
    description: 'Where --prometheus writes the scrape config.',
  }),
  showLogs: opt.bool({
    default: false,
    description:
      "Print every component's log lines at --log-level and above, each prefixed by the component's name (otherwise only their warnings and errors).",
  }),
  ...parentWatchOptions,
  ...shutdownOptions,
  ...loggingOptions,
};

const devCommand: CommandDefinition<typeof devOptions> = {
  name: 'dev',
  summary:
    'The local P/D stack on simulators: prefill and decode simulators, a sidecar per decode, the EPP and the gateway.',
  description: `Starts N prefill simulators, M decode simulators each fronted by its own routing sidecar, the EPP (file
discovery of those endpoints, a P/D EndpointPickerConfig) and the gateway, then prints the URLs. Send OpenAI requests to
the gateway. Ctrl-C (SIGINT) or SIGTERM stops everything, front to back; so does the exit of the process that started
this one (npm, a shell), and a component started by this process stops when this process is gone, even killed.`,
  options: devOptions,
  envPrefix: 'PD_DEV',
};

export function describeStack(devStack: DevStack): string {
  const o = devStack.options;
  const lines = [
    `pd-router dev: ${devStack.shape} on simulators (profile ${o.profile}, model ${o.model}, decider ${o.decider}${o.timeScale !== 1 ? `, time scale ${o.timeScale}` : ''})`,
    '',
    `  gateway     ${devStack.gateway.url}   metrics ${devStack.gateway.url}/gateway/metrics`,
    `  epp         grpc ${devStack.epp.url}   metrics http://${o.host}:${devStack.epp.ports.metricsPort}/metrics`,
  ];
  devStack.encoders.forEach((component, i) =>
    lines.push(`  encode-${i}    ${component.url}   metrics ${component.url}/metrics`),
  );
  devStack.prefills.forEach((component, i) =>
    lines.push(`  prefill-${i}   ${component.url}   metrics ${component.url}/metrics`),
  );
  for (const d of devStack.decodes)
    lines.push(
      `  ${d.name}    sidecar ${d.sidecar.url} -> vLLM sim ${d.sim.url}   metrics ${d.sidecar.url}/sidecar/metrics, ${d.sim.url}/metrics`,
    );
  lines.push(
    '',
    `Endpoints file: ${devStack.endpointsFile}   EPP config: ${devStack.eppConfigFile}`,
    '',
    'Try:',
    `  curl -s ${devStack.gateway.url}/v1/chat/completions -H 'content-type: application/json' \\`,
    `    -d '{"model":"${o.model}","messages":[{"role":"user","content":"Hello!"}],"max_tokens":32}'`,
    '',
    {
      prefix: `Prompts with at least ${o.nonCachedTokens} tokens not cached on the chosen decode pod (about ${o.nonCachedTokens * 4} characters) are prefilled remotely.`,
      always: 'Every prompt is prefilled remotely (always-disagg-pd-decider).',
      cost: 'A prompt is prefilled remotely when the cost model expects that to be faster, or to spare the decode pod a stall.',
      never: 'No prompt is prefilled remotely (decode-only).',
    }[o.decider],
    ...(devStack.encoders.length > 0
      ? [
          'Chat requests with image_url, audio_url, video_url or input_audio parts are encoded first on an encoder (E/P/D).',
        ]
      : []),
    `Add -H 'x-pd-router-debug: decision' to see the decision and its reason in the x-pd-router-decision response header;`,
    `llm_d_epp_disagg_decision_total counts them on the EPP metrics. Ctrl-C stops everything.`,
  );
  return lines.join('\n') + '\n';
}

export const devCommandModule = defineCommand(devCommand, async (optionValues, logger) => {
  const stack = await startDevStack({
    encode: optionValues.encode,
    prefill: optionValues.prefill,
    decode: optionValues.decode,
    profile: optionValues.profile,
    model: optionValues.model,
    host: optionValues.host,
    gatewayPort: optionValues.port,
    basePort: optionValues.basePort,
    eppGrpcPort: optionValues.eppGrpcPort,
    eppMetricsPort: optionValues.eppMetricsPort,
    decider: optionValues.decider,
    nonCachedTokens: optionValues.nonCachedTokens,
    eppConfigFile: optionValues.eppConfig || undefined,
    mode: optionValues.inProcess ? 'in-process' : 'processes',
    timeScale: optionValues.timeScale,
    seed: optionValues.seed,
    failureModeAllow: optionValues.failureModeAllow,
    prefillFailurePolicy: optionValues.prefillFailurePolicy,
    logger,
    childLogs: { level: optionValues.logLevel, show: optionValues.showLogs, format: optionValues.logFormat },
    shutdownTimeoutMs: optionValues.shutdownTimeout,
  });
  process.stdout.write(describeStack(stack));
  if (optionValues.prometheus) {
    const file = path.resolve(optionValues.prometheusFile);
    writeFileSync(file, prometheusScrapeConfig(stack));
    process.stdout.write(
      `\nPrometheus scrape config written to ${file}. Run:\n  prometheus --config.file=${file}\nthen import deploy/grafana/pd-router-dashboard.json into Grafana (data source: that Prometheus).\n`,
    );
  }
  return {
    stop: (delta) => stack.close(delta),
    kill: () => stack.kill(),
    // The gateway or the EPP exited on its own: stop the rest and exit non-zero.
    ended: stack.broken.then(async (why) => {
      logger.error({ reason: why }, 'the stack cannot serve without it; stopping everything');
      await stack.close(optionValues.shutdownTimeout);
      return 1;
    }),
  };
});
