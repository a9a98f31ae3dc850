/**
 * Parameters of `disagg-profile-handler`, parsed strictly as upstream: the nested form first, then the legacy flat
 * form.
 *
 * Nested: `stageOrder` (decode-first | prefill-first, kebab or PascalCase; default decode-first),
 * `profiles: {decode = "decode", prefill = "prefill", encode = "encode"}`, `deciders: {prefill?, encode?}` (plugin
 * names). Legacy: `stageOrder`, `decodeProfile`, `prefillProfile`, `encodeProfile`, `prefillDeciderPluginName`,
 * `encodeDeciderPluginName`, `deciderPluginName` (→ prefill).
 *
 * pd-router addition, accepted in both forms: `onPrefillUnavailable` (decode-only | fail, default decode-only) — what
 * to do when the decider chose prefill but no prefill endpoint is eligible: serve on the decode endpoint alone
 * (llm-d @ebab6879) or answer 503 (llm-d #2521).
 */
import { z } from 'zod';

const stageOrder = z
  .string()
  .transform((text, ctx) => {
    const k = text.toLowerCase().replace(/[-_]/g, '');
    if (k === 'decodefirst') return 'decode-first' as const;
    if (k === 'prefillfirst') return 'prefill-first' as const;
    ctx.addIssue({ code: 'custom', message: `must be decode-first or prefill-first, got "${text}"` });
    return z.NEVER;
  })
  .optional();

const onPrefillUnavailable = z.enum(['decode-only', 'fail']).optional();

const nested = z
  .object({
    stageOrder,
    profiles: z.object({ decode: z.string().min(1).optional(), prefill: z.string().min(1).optional(), encode: z.string().min(1).optional() }).strict().optional(),
    deciders: z.object({ prefill: z.string().min(1).optional(), encode: z.string().min(1).optional() }).strict().optional(),
    onPrefillUnavailable,
  })
  .strict();

const legacy = z
  .object({
    stageOrder,
    decodeProfile: z.string().min(1).optional(),
    prefillProfile: z.string().min(1).optional(),
    encodeProfile: z.string().min(1).optional(),
    prefillDeciderPluginName: z.string().min(1).optional(),
    encodeDeciderPluginName: z.string().min(1).optional(),
    deciderPluginName: z.string().min(1).optional(),
    onPrefillUnavailable,
  })
  .strict();

export interface DisaggSettings {
  stageOrder: 'decode-first' | 'prefill-first';
  profiles: { decode: string; prefill: string; encode: string };
  deciders: { prefill?: string; encode?: string };
  onPrefillUnavailable: 'decode-only' | 'fail';
  /** The approx-prefix-cache-producer whose match the deciders see; default the first one (pd-profile-handler sets it). */
  producer?: string;
}

const LEGACY_KEYS = ['decodeProfile', 'prefillProfile', 'encodeProfile', 'prefillDeciderPluginName', 'encodeDeciderPluginName', 'deciderPluginName'];

function settingsOf(raw: Record<string, unknown>, ctx: z.RefinementCtx): DisaggSettings {
  // llm-d tries the nested form first and falls back to the legacy one; a legacy key can only parse as legacy.
  const legacyForm = LEGACY_KEYS.some((k) => k in raw);
  const r = (legacyForm ? legacy : nested).safeParse(raw);
  if (!r.success) {
    for (const i of r.error.issues) {
      if (i.code === 'unrecognized_keys') ctx.addIssue({ code: 'custom', message: `unknown parameter ${i.keys.map((k) => `"${k}"`).join(', ')}`, path: i.path });
      else ctx.addIssue({ code: 'custom', message: i.message, path: i.path });
    }
    return z.NEVER;
  }
  if (legacyForm) {
    const l = r.data as z.infer<typeof legacy>;
    return {
      stageOrder: l.stageOrder ?? 'decode-first',
      profiles: { decode: l.decodeProfile ?? 'decode', prefill: l.prefillProfile ?? 'prefill', encode: l.encodeProfile ?? 'encode' },
      deciders: { prefill: l.prefillDeciderPluginName ?? l.deciderPluginName, encode: l.encodeDeciderPluginName },
      onPrefillUnavailable: l.onPrefillUnavailable ?? 'decode-only',
    };
  }
  const n = r.data as z.infer<typeof nested>;
  return {
    stageOrder: n.stageOrder ?? 'decode-first',
    profiles: { decode: n.profiles?.decode ?? 'decode', prefill: n.profiles?.prefill ?? 'prefill', encode: n.profiles?.encode ?? 'encode' },
    deciders: { prefill: n.deciders?.prefill, encode: n.deciders?.encode },
    onPrefillUnavailable: n.onPrefillUnavailable ?? 'decode-only',
  };
}

export const disaggParams = z.record(z.string(), z.unknown()).transform(settingsOf);
