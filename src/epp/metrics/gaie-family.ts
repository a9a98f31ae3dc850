/**
 * The GAIE v1.4.0 metric family: what llm-d-inference-scheduler v0.7.1's EPP exposes (GAIE's `pkg/epp/metrics`
 * and `collectors/inference_pool.go`, plus v0.7.1's own `pkg/metrics`), with the same names, help, types, label
 * names and buckets. The interop suite compares them with upstream's code.
 *
 * Only what pd-router can fill is registered. Left out, because pd-router has no such component (upstream without
 * it registers them but never records a sample): the latency predictor's `inference_objective_request_ttft_seconds`,
 * `_tpot_seconds`, `_predicted_*`, `_*_prediction_duration_seconds`, `_slo_violation_total` and
 * `_inference_request_metric`; flow control's `inference_extension_flow_control_*`.
 */
import type { Registry } from 'prom-client';
import { BoundCounter, BoundGauge, BoundHistogram } from '../../common/index.js';
import { GENERAL_LATENCY, HIT_BYTES, HIT_RATIO, NTPOT, OUTPUT_TOKENS, PROMPT_TOKENS, REQUEST_BYTES, RESPONSE_BYTES, SCHEDULER } from './buckets.js';

type Model = 'model_name' | 'target_model_name';
const MODEL: Model[] = ['model_name', 'target_model_name'];

export class GaieFamily {
  readonly requestTotal: BoundCounter<Model>;
  readonly requestErrorTotal: BoundCounter<Model | 'error_code'>;
  readonly requestDuration: BoundHistogram<Model>;
  readonly requestSizes: BoundHistogram<Model>;
  readonly responseSizes: BoundHistogram<Model>;
  readonly inputTokens: BoundHistogram<Model>;
  readonly outputTokens: BoundHistogram<Model>;
  readonly promptCachedTokens: BoundHistogram<Model>;
  readonly runningRequests: BoundGauge<'model_name'>;
  readonly ntpot: BoundHistogram<Model>;
  readonly schedulerE2e: BoundHistogram<never>;
  readonly schedulerAttempts: BoundCounter<'status'>;
  readonly pluginDuration: BoundHistogram<'extension_point' | 'plugin_type' | 'plugin_name'>;
  readonly prefixIndexerSize: BoundGauge<never>;
  readonly prefixIndexerHitRatio: BoundHistogram<never>;
  readonly prefixIndexerHitBytes: BoundHistogram<never>;
  readonly info: BoundGauge<'commit' | 'build_ref'>;
  readonly modelRewriteDecisions: BoundCounter<'model_rewrite_name' | 'model_name' | 'target_model'>;
  /** llm-d-inference-scheduler v0.7.1 `pkg/metrics`. */
  readonly disaggDecision: BoundCounter<'model_name' | 'decision_type'>;
  readonly pdDecision: BoundCounter<'model_name' | 'decision_type'>;

  constructor(registry: Registry) {
    const registers = [registry];
    const O = 'inference_objective_';
    const X = 'inference_extension_';
    const help = (text: string) => `[ALPHA] ${text}`;
    const hist = <L extends string>(name: string, text: string, labelNames: L[], buckets: number[]) => new BoundHistogram<L>({ name, help: help(text), labelNames, buckets, registers });
    const perModel = (what: string) => `${what} for each model and target model.`;

    this.requestTotal = new BoundCounter({ name: `${O}request_total`, help: help('Counter of inference objective requests broken out for each model and target model.'), labelNames: MODEL, registers });
    this.requestErrorTotal = new BoundCounter({ name: `${O}request_error_total`, help: help('Counter of inference objective requests errors broken out for each model and target model.'), labelNames: [...MODEL, 'error_code'], registers });
    this.requestDuration = hist(`${O}request_duration_seconds`, perModel('Inference objective response latency distribution in seconds'), MODEL, GENERAL_LATENCY);
    this.requestSizes = hist(`${O}request_sizes`, perModel('Inference objective requests size distribution in bytes'), MODEL, REQUEST_BYTES);
    this.responseSizes = hist(`${O}response_sizes`, perModel('Inference objective responses size distribution in bytes'), MODEL, RESPONSE_BYTES);
    this.inputTokens = hist(`${O}input_tokens`, 'Inference objective input token count distribution for requests in each model.', MODEL, PROMPT_TOKENS);
    this.outputTokens = hist(`${O}output_tokens`, 'Inference objective output token count distribution for requests in each model.', MODEL, OUTPUT_TOKENS);
    this.promptCachedTokens = hist(`${O}prompt_cached_tokens`, 'Inference objective prompt cached token count distribution for requests in each model.', MODEL, PROMPT_TOKENS);
    this.runningRequests = new BoundGauge({ name: `${O}running_requests`, help: help('Inference objective number of running requests in each model.'), labelNames: ['model_name'], registers });
    this.ntpot = hist(`${O}normalized_time_per_output_token_seconds`, perModel('Inference objective latency divided by number of output tokens in seconds'), MODEL, NTPOT);

    this.schedulerE2e = hist(`${X}scheduler_e2e_duration_seconds`, 'End-to-end scheduling latency distribution in seconds.', [], SCHEDULER);
    this.schedulerAttempts = new BoundCounter({ name: `${X}scheduler_attempts_total`, help: help('Total number of scheduling attempts.'), labelNames: ['status'], registers });
    this.pluginDuration = hist(
      `${X}plugin_duration_seconds`,
      'Plugin processing latency distribution in seconds for each extension point, plugin type and plugin name.',
      ['extension_point', 'plugin_type', 'plugin_name'],
      SCHEDULER,
    );
    this.prefixIndexerSize = new BoundGauge({ name: `${X}prefix_indexer_size`, help: help('Size of the prefix indexer.'), labelNames: [], registers, zeroBeforeFirst: false });
    this.prefixIndexerHitRatio = hist(`${X}prefix_indexer_hit_ratio`, 'Ratio of prefix length matched to total prefix length in the cache lookup.', [], HIT_RATIO);
    this.prefixIndexerHitBytes = hist(`${X}prefix_indexer_hit_bytes`, 'Length of the prefix match in number of bytes in the cache lookup.', [], HIT_BYTES);
    this.info = new BoundGauge({ name: `${X}info`, help: help('General information of the current build of Inference Extension.'), labelNames: ['commit', 'build_ref'], registers });
    this.modelRewriteDecisions = new BoundCounter({ name: `${X}model_rewrite_decisions_total`, help: help('Total number of inference model rewrite decisions.'), labelNames: ['model_rewrite_name', 'model_name', 'target_model'], registers });

    this.disaggDecision = new BoundCounter({ name: 'llm_d_inference_scheduler_disagg_decision_total', help: help('Total number of disaggregation routing decisions made'), labelNames: ['model_name', 'decision_type'], registers });
    this.pdDecision = new BoundCounter({ name: 'llm_d_inference_scheduler_pd_decision_total', help: help('Total number of P/D disaggregation decisions made'), labelNames: ['model_name', 'decision_type'], registers });
  }
}
