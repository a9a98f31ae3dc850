/**
 * The EndpointPickerConfig document (llm-d `apix/config/v1alpha1/endpointpickerconfig_types.go`), validated with zod.
 * Unknown top-level fields are errors (they are usually typos); `flowControl` and `saturationDetector` are accepted
 * and reported as not implemented.
 */
import { z } from 'zod';

/** apiVersions llm-d's loader and tests use; all mean the same schema. */
export const ACCEPTED_API_VERSIONS = [
  'llm-d.ai/v1alpha1',
  'llm-d.ai/v1',
  'inference.networking.x-k8s.io/v1alpha1',
  'config.apix.gateway-api-inference-extension.sigs.k8s.io/v1alpha1',
] as const;

const ref = z.object({ pluginRef: z.string().min(1, 'pluginRef must not be empty') }).strict();

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
      .array(z.object({ pluginRef: z.string().min(1, 'pluginRef must not be empty'), weight: z.number().min(0, 'weight must be >= 0').optional() }).strict())
      .default([]),
  })
  .strict();

export const endpointPickerConfigSchema = z
  .object({
    apiVersion: z.string().refine((v) => (ACCEPTED_API_VERSIONS as readonly string[]).includes(v), {
      message: `apiVersion must be one of ${ACCEPTED_API_VERSIONS.join(', ')}`,
    }),
    kind: z.literal('EndpointPickerConfig', { message: 'kind must be EndpointPickerConfig' }),
    featureGates: z.array(z.string()).default([]),
    plugins: z.array(pluginSpecSchema).default([]),
    schedulingProfiles: z.array(profileSchema).default([]),
    dataLayer: z
      .object({
        injectDefaults: z.boolean().optional(),
        sources: z.array(z.object({ pluginRef: z.string().min(1), extractors: z.array(ref).default([]) }).strict()).optional(),
        discovery: ref.optional(),
      })
      .strict()
      .optional(),
    requestHandler: z.object({ parsers: z.array(ref).optional() }).strict().optional(),
    flowControl: z.unknown().optional(),
    saturationDetector: ref.optional(),
  })
  .strict();

export type EndpointPickerConfigDocument = z.infer<typeof endpointPickerConfigSchema>;
export type PluginSpec = z.infer<typeof pluginSpecSchema>;

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
