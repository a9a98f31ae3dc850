/**
 * The EndpointPickerConfig document, validated with zod, in the two schemas users bring:
 *
 * - `llm-d.ai/v1alpha1`: llm-d-router's `apix/config/v1alpha1` (featureGates, plugins, schedulingProfiles,
 *   dataLayer, requestHandler, flowControl; the deprecated top-level `saturationDetector: {pluginRef}` and
 *   `parser: {pluginRef}`).
 * - `inference.networking.x-k8s.io/v1alpha1`: the Gateway API Inference Extension's schema, which llm-d v0.7.1 (GAIE
 *   v1.4) and GAIE v1.5 load, and which llm-d-router still accepts as a deprecated alias of its own. pd-router accepts
 *   the union: GAIE v1.4's `data:` section and threshold form of `saturationDetector`, GAIE v1.5's `dataLayer:`,
 *   `parser:` and `saturationDetector: {pluginRef}`, and llm-d-router's additions.
 *
 * Unknown fields are errors at every level (upstream decodes strictly). Feature gates are checked against the gates
 * upstream registers for that apiVersion; `name=false` turns a gate off (llm-d-router's syntax).
 */
import { z } from 'zod';
import {
  flowControlSection,
  saturationDetectorRef,
  saturationDetectorThresholds,
  type FlowControlSection,
  type SaturationThresholds,
} from './flow-control-section.js';
import { goDuration, pluginName, pluginRefObject } from './go-values.js';

export type ApiFamily = 'llm-d' | 'gaie';

export const API_VERSIONS: Readonly<Record<string, ApiFamily>> = {
  'llm-d.ai/v1alpha1': 'llm-d',
  'inference.networking.x-k8s.io/v1alpha1': 'gaie',
};
/** The EndpointPickerConfig apiVersions pd-router accepts (llm-d and GAIE families). */
export const ACCEPTED_API_VERSIONS = Object.keys(API_VERSIONS);

/**
 * Feature gates upstream registers, with their defaults. llm-d-router: flowControl, haPopulateNonLeaderDatastore.
 * GAIE v1.4: dataLayer, flowControl, prepareDataPlugins; v1.5: dataLayer, enableLegacyMetrics, flowControl.
 */
export const FEATURE_GATES: Readonly<Record<ApiFamily, Readonly<Record<string, boolean>>>> = {
  'llm-d': { flowControl: false, haPopulateNonLeaderDatastore: true },
  gaie: {
    flowControl: false,
    haPopulateNonLeaderDatastore: true,
    dataLayer: false,
    prepareDataPlugins: false,
    enableLegacyMetrics: false,
  },
};

export const pluginSpecSchema = z
  .object({
    name: z.string().min(1).optional(),
    type: z.string().min(1, 'type must not be empty'),
    parameters: z.unknown().optional(),
  })
  .strict();

export const profileSchema = z
  .object({
    name: z.string().min(1, 'profile name must not be empty'),
    plugins: z
      .array(z.object({ pluginRef: pluginName, weight: z.number().min(0, 'weight must be >= 0').optional() }).strict())
      .default([]),
  })
  .strict();

const dataSource = z.object({ pluginRef: pluginName, extractors: z.array(pluginRefObject).default([]) }).strict();

/** llm-d-router's `dataLayer` (GAIE v1.5's is its `sources` part). */
const dataLayerSection = z
  .object({
    injectDefaults: z.boolean().optional(),
    sources: z.array(dataSource).optional(),
    discovery: pluginRefObject.optional(),
    peerDiscovery: pluginRefObject.optional(),
    crossReplicaSyncerPluginRef: z.string().optional(),
    crossReplicaSyncInterval: goDuration.optional(),
  })
  .strict();

/** GAIE v1.4's `data` section. */
const gaieV14Data = z.object({ sources: z.array(dataSource) }).strict();

/** A gate as written: `name` (on) or `name=<bool>` (llm-d-router); undefined when the value is not a boolean. */
function featureGateValue(raw: string): [string, boolean] | undefined {
  const [name, value] = raw.split('=', 2) as [string, string | undefined];
  if (value === undefined) return [name.trim(), true];
  const v = value.trim().toLowerCase();
  if (['1', 't', 'true'].includes(v)) return [name.trim(), true];
  if (['0', 'f', 'false'].includes(v)) return [name.trim(), false];
  return undefined;
}

const common = {
  apiVersion: z.string(),
  kind: z.literal('EndpointPickerConfig', { error: 'kind must be EndpointPickerConfig' }),
  featureGates: z.array(z.string()).default([]),
  plugins: z.array(pluginSpecSchema).default([]),
  schedulingProfiles: z.array(profileSchema).default([]),
  dataLayer: dataLayerSection.optional(),
  requestHandler: z
    .object({ parsers: z.array(pluginRefObject).optional() })
    .strict()
    .optional(),
  parser: pluginRefObject.optional(),
  flowControl: flowControlSection.optional(),
};

const llmdDocument = z.object({ ...common, saturationDetector: saturationDetectorRef.optional() }).strict();

/** GAIE v1.5 / llm-d-router `{pluginRef}`, or GAIE v1.4 thresholds; the two cannot be mixed. */
const gaieSaturationDetector = z.record(z.string(), z.unknown()).transform((raw, ctx) => {
  const r = 'pluginRef' in raw ? saturationDetectorRef.safeParse(raw) : saturationDetectorThresholds.safeParse(raw);
  if (!r.success) {
    for (const i of r.error.issues) {
      const message =
        i.code === 'unrecognized_keys' && 'pluginRef' in raw
          ? 'pluginRef (GAIE v1.5, llm-d) cannot be combined with thresholds (GAIE v1.4)'
          : i.message;
      ctx.addIssue({ code: 'custom', path: i.path, message });
    }
    return z.NEVER;
  }
  return 'pluginRef' in raw
    ? { form: 'ref' as const, ...(r.data as { pluginRef?: string }) }
    : { form: 'thresholds' as const, ...(r.data as SaturationThresholds) };
});

const gaieDocument = z
  .object({ ...common, data: gaieV14Data.optional(), saturationDetector: gaieSaturationDetector.optional() })
  .strict();

export type PluginSpec = z.infer<typeof pluginSpecSchema>;
export type ProfileSpec = z.infer<typeof profileSchema>;
export type DataLayerSection = z.infer<typeof dataLayerSection>;

export interface EndpointPickerConfigDocument {
  readonly apiVersion: string;
  readonly family: ApiFamily;
  readonly kind: 'EndpointPickerConfig';
  /** Every gate registered for the apiVersion, with its effective value. */
  readonly featureGates: Readonly<Record<string, boolean>>;
  readonly plugins: PluginSpec[];
  readonly schedulingProfiles: ProfileSpec[];
  /** `dataLayer`, or GAIE v1.4's `data` (then `dataKey` is "data"). */
  readonly dataLayer?: DataLayerSection;
  readonly dataKey?: 'data' | 'dataLayer';
  readonly requestHandler?: { parsers?: Array<{ pluginRef: string }> };
  /** Deprecated single parser (GAIE v1.5; llm-d-router maps it to requestHandler.parsers). */
  readonly parser?: { pluginRef: string };
  readonly flowControl?: FlowControlSection;
  /** The top-level section as written (deprecated in llm-d-router in favour of flowControl.saturationDetector). */
  readonly saturationDetector?:
    ({ form: 'ref' } & { pluginRef?: string }) | ({ form: 'thresholds' } & SaturationThresholds);
}

type Issues = Array<{ path: PropertyKey[]; message: string }>;

/** Validates a parsed YAML mapping; returns the normalised document or the issues. */
export function validateDocument(
  raw: Record<string, unknown>,
): { ok: true; doc: EndpointPickerConfigDocument } | { ok: false; issues: Issues } {
  const apiVersion = raw.apiVersion;
  const family = typeof apiVersion === 'string' ? API_VERSIONS[apiVersion] : undefined;
  if (!family)
    return {
      ok: false,
      issues: [{ path: ['apiVersion'], message: `apiVersion must be one of ${ACCEPTED_API_VERSIONS.join(', ')}` }],
    };
  const extra: Issues = [];
  if (family === 'llm-d' && 'data' in raw) {
    extra.push({
      path: ['data'],
      message:
        'is the GAIE v1.4 name of the data layer section (apiVersion inference.networking.x-k8s.io/v1alpha1); llm-d.ai/v1alpha1 calls it dataLayer',
    });
    delete raw.data;
  }
  if (family === 'gaie' && 'data' in raw && 'dataLayer' in raw)
    extra.push({ path: ['data'], message: 'data (GAIE v1.4) and dataLayer (GAIE v1.5, llm-d) cannot both be set' });
  const r = family === 'llm-d' ? llmdDocument.safeParse(raw) : gaieDocument.safeParse(raw);
  const issues: Issues = [
    ...extra,
    ...(r.success ? [] : r.error.issues.map((i) => ({ path: i.path, message: i.message }))),
  ];
  if (!r.success || issues.length > 0) return { ok: false, issues };
  const d = r.data as z.infer<typeof gaieDocument>;
  const gates: Record<string, boolean> = { ...FEATURE_GATES[family] };
  for (const [i, g] of d.featureGates.entries()) {
    const gate = featureGateValue(g);
    if (!gate) {
      issues.push({ path: ['featureGates', i], message: `"${g}": the value after = must be true or false` });
      continue;
    }
    if (!(gate[0] in gates)) {
      issues.push({
        path: ['featureGates', i],
        message: `unknown feature gate "${gate[0]}" for ${String(apiVersion)} (known: ${Object.keys(gates).join(', ')})`,
      });
      continue;
    }
    gates[gate[0]] = gate[1];
  }
  if (issues.length > 0) return { ok: false, issues };
  const sd = d.saturationDetector as
    EndpointPickerConfigDocument['saturationDetector'] | { pluginRef?: string } | undefined;
  return {
    ok: true,
    doc: {
      apiVersion: apiVersion as string,
      family,
      kind: d.kind,
      featureGates: gates,
      plugins: d.plugins,
      schedulingProfiles: d.schedulingProfiles,
      dataLayer: d.dataLayer ?? d.data,
      dataKey: d.data ? 'data' : d.dataLayer ? 'dataLayer' : undefined,
      requestHandler: d.requestHandler,
      parser: d.parser,
      flowControl: d.flowControl,
      saturationDetector: sd === undefined ? undefined : 'form' in sd ? sd : { form: 'ref', ...sd },
    },
  };
}

/** What llm-d runs when no config is given: queue ×2, kv-cache utilization ×2, prefix cache ×3, max-score picker. */
export const DEFAULT_CONFIG_YAML = `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
`;
