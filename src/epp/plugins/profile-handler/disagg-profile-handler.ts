/**
 * `disagg-profile-handler`: P/D (and E/PD) disaggregation, llm-d's decode-first order.
 *
 * Decode-first (default):
 * 1. Run the decode profile. Nothing picked → stop (the request fails with 429).
 * 2. Encode stage (if an encode profile exists): the encode decider, given the decode pick, says whether to run it.
 * 3. Prefill stage (if a prefill profile exists): the prefill decider is consulted at most once, with the decode
 *    profile's first pick and its prefix match; yes → the decode pick becomes the peer endpoint and the prefill
 *    profile runs. No decider → no prefill.
 * 4. Decision = decode-only | prefill-decode | encode-decode | encode-prefill-decode, counted in
 *    llm_d_epp_disagg_decision_total (and its legacy twin) and llm_d_epp_disagg_decision_reason_total, logged at debug.
 * Prefill-first: prefill (always, no decider) → encode (decider without a decode endpoint) → decode, with the prefill
 * pick as the peer endpoint; a failed prefill still lets decode run.
 *
 * When prefill was chosen but its profile found nothing: `onPrefillUnavailable: decode-only` (default) serves on the
 * decode endpoint alone, reason `no-prefill-endpoint`; `fail` answers 503.
 *
 * PreRequest writes the routing headers: `x-prefiller-host-port` = the prefill pick (IPv6 bracketed) and
 * `x-encoder-hosts-ports` = every encode pick, comma-joined; a client's own values are always dropped first.
 * Parameters: see disagg-params.ts.
 */
import { ConfigError } from '../../../common/index.js';
import type { Decision, DecisionInput, PdDecider, PrefixMatch } from '../../../decider/index.js';
import { InferenceError } from '../../framework/errors.js';
import type {
  DisaggDecisionRecord,
  Endpoint,
  PreRequest,
  ProfileHandler,
  ProfileResults,
  SchedulerProfileView,
  SchedulingContext,
  SchedulingResult,
} from '../../framework/types.js';
import { isDecider } from '../../framework/types.js';
import { PREFIX_MATCH_DATA, prefixMatchOf } from '../../prefix/match-state.js';
import { writeDisaggHeaders } from '../../routing-headers.js';
import { definePlugin, type PluginFactoryContext } from '../definition.js';
import { disaggParams, type DisaggSettings } from './disagg-params.js';

interface StageNotes {
  prefill?: Decision & { chosen: boolean };
  encode?: Decision & { chosen: boolean };
}

function deciderNamed(ctx: PluginFactoryContext, name: string | undefined): PdDecider | undefined {
  if (name === undefined) return undefined;
  const p = ctx.plugin(name);
  if (!isDecider(p) || !ctx.kindsOf(name).includes('decider'))
    throw new ConfigError(`plugin "${ctx.name}" (type ${ctx.type}): "${name}" (type ${p.type}) is not a decider`);
  return p;
}

/**
 * A decider's input. A class, not an object literal with a getter: V8 gives each such literal its own hidden class
 * (map), and maps live in the old generation, so every request's context stayed reachable from a dead map until the
 * next full collection: ~0.7 MB promoted per scavenge at one request in flight, each scavenge 2-5 ms
 * (bench/results/epp-perf.md, third pass).
 */
class ConsultInput implements DecisionInput {
  readonly request: SchedulingContext['request'];
  readonly decode: DecisionInput['decode'];
  readonly now: () => number;
  private prefill: Endpoint[] | undefined;

  constructor(
    private readonly context: SchedulingContext,
    private readonly producer: string | undefined,
    decodePick: Endpoint | undefined,
    private readonly prefillProfile: SchedulerProfileView | undefined,
    private readonly candidates: readonly Endpoint[],
  ) {
    this.request = context.request;
    this.decode = decodePick
      ? { endpoint: decodePick, prefix: producer ? prefixMatchOf(context, producer, decodePick.id) : undefined }
      : undefined;
    this.now = context.now;
  }

  get prefillCandidates(): readonly Endpoint[] {
    return (this.prefill ??= this.prefillProfile?.filter(this.context, this.candidates) ?? []);
  }

  prefixMatch(id: string): PrefixMatch | undefined {
    return this.producer ? prefixMatchOf(this.context, this.producer, id) : undefined;
  }
}

export interface DisaggHandlerHooks {
  /** Counts a decision; default: llm_d_epp_disagg_decision_total and friends. */
  record?: (model: string, type: DisaggDecisionRecord['type'], reason: string) => void;
  /** Rewrites the final result (pd-profile-handler's primaryPort). */
  finish?: (context: SchedulingContext, result: SchedulingResult) => SchedulingResult;
}

export function createDisaggHandler(
  ctx: PluginFactoryContext,
  settings: DisaggSettings,
  hooks: DisaggHandlerHooks = {},
): ProfileHandler & PreRequest {
  if (settings.stageOrder === 'prefill-first' && settings.deciders.prefill) {
    throw new ConfigError(
      `plugin "${ctx.name}" (type ${ctx.type}): stageOrder prefill-first cannot be combined with a prefill decider`,
    );
  }
  const prefillDecider = deciderNamed(ctx, settings.deciders.prefill);
  const encodeDecider = deciderNamed(ctx, settings.deciders.encode);
  const producer = settings.producer ?? ctx.namesProducing(PREFIX_MATCH_DATA)[0];
  const notesKey = `disagg/${ctx.name}`;
  const { decode, prefill, encode } = settings.profiles;

  const notes = (context: SchedulingContext): StageNotes => {
    let n = context.state.get(notesKey) as StageNotes | undefined;
    if (!n) context.state.set(notesKey, (n = {}));
    return n;
  };

  const consult = (
    context: SchedulingContext,
    decider: PdDecider,
    decodePick: Endpoint | undefined,
    profiles: ReadonlyMap<string, SchedulerProfileView>,
    candidates: readonly Endpoint[],
  ): Decision => {
    const input = new ConsultInput(context, producer, decodePick, profiles.get(prefill), candidates);
    try {
      return decider.decide(input);
    } catch (err) {
      context.logger.warn(
        { err, reqId: context.request.requestId, decider: decider.name },
        'decider failed; not disaggregating',
      );
      return { disaggregate: false, reason: 'decider-error' };
    }
  };

  const decideDecodeFirst = (
    context: SchedulingContext,
    profiles: ReadonlyMap<string, SchedulerProfileView>,
    results: ProfileResults,
    candidates: readonly Endpoint[],
  ): string[] => {
    if (!results.has(decode)) return profiles.has(decode) ? [decode] : [];
    const decodePick = results.get(decode)?.targets[0];
    if (!decodePick) return [];
    const n = notes(context);
    if (profiles.has(encode) && !results.has(encode)) {
      const d = encodeDecider
        ? consult(context, encodeDecider, decodePick, profiles, candidates)
        : { disaggregate: false, reason: 'no-decider' };
      n.encode = { ...d, chosen: d.disaggregate };
      if (d.disaggregate) return [encode];
      results.set(encode, null);
    }
    if (profiles.has(prefill) && !results.has(prefill)) {
      const d = prefillDecider
        ? consult(context, prefillDecider, decodePick, profiles, candidates)
        : { disaggregate: false, reason: 'no-decider' };
      n.prefill = { ...d, chosen: d.disaggregate };
      if (d.disaggregate) {
        context.peerEndpoint = decodePick;
        return [prefill];
      }
      results.set(prefill, null);
    } else if (!profiles.has(prefill) && !n.prefill) {
      n.prefill = { disaggregate: false, reason: 'no-prefill-profile', chosen: false };
    }
    return [];
  };

  const decidePrefillFirst = (
    context: SchedulingContext,
    profiles: ReadonlyMap<string, SchedulerProfileView>,
    results: ProfileResults,
    candidates: readonly Endpoint[],
  ): string[] => {
    const n = notes(context);
    if (profiles.has(prefill) && !results.has(prefill)) {
      n.prefill = { disaggregate: true, reason: 'prefill-first', chosen: true };
      return [prefill];
    }
    if (profiles.has(encode) && !results.has(encode)) {
      const d = encodeDecider
        ? consult(context, encodeDecider, undefined, profiles, candidates)
        : { disaggregate: false, reason: 'no-decider' };
      n.encode = { ...d, chosen: d.disaggregate };
      if (d.disaggregate) return [encode];
      results.set(encode, null);
    }
    if (!results.has(decode)) {
      context.peerEndpoint = results.get(prefill)?.targets[0];
      return profiles.has(decode) ? [decode] : [];
    }
    if (!n.prefill) n.prefill = { disaggregate: false, reason: 'no-prefill-profile', chosen: false };
    return [];
  };

  return {
    type: ctx.type,
    name: ctx.name,
    pickProfiles: (context, profiles, results, candidates) =>
      settings.stageOrder === 'prefill-first'
        ? decidePrefillFirst(context, profiles, results, candidates)
        : decideDecodeFirst(context, profiles, results, candidates),

    processResults(context: SchedulingContext, results: ProfileResults): SchedulingResult {
      const d = results.get(decode);
      if (!d || d.targets.length === 0) {
        const err = context.profileErrors.get(decode);
        if (err instanceof InferenceError && err.dropReason === 'rejected-saturated') throw err;
        throw new InferenceError(
          'ResourceExhausted',
          'failed to find target endpoint: failed to find available decode workers',
        );
      }
      const n = notes(context);
      const p = results.get(prefill) ?? null;
      const e = results.get(encode) ?? null;
      let reason = n.prefill?.reason ?? 'no-prefill-profile';
      let detail = n.prefill?.detail;
      if (n.prefill?.chosen && !p) {
        reason = 'no-prefill-endpoint';
        detail = { ...detail, decidedReason: n.prefill.reason };
        if (settings.onPrefillUnavailable === 'fail') {
          ctx.metrics.recordRejection(reason);
          context.logger.debug(
            { reqId: context.request.requestId, reason },
            'prefill required but no prefill endpoint is eligible; rejecting',
          );
          throw new InferenceError(
            'ServiceUnavailable',
            'prefill was required but no prefill endpoint is available',
            'rejected-no-endpoints',
          );
        }
      }
      const type: DisaggDecisionRecord['type'] = e
        ? p
          ? 'encode-prefill-decode'
          : 'encode-decode'
        : p
          ? 'prefill-decode'
          : 'decode-only';
      context.decision = { type, reason, detail };
      if (hooks.record) hooks.record(context.request.targetModel, type, reason);
      else ctx.metrics.recordDecision(ctx, context.request.targetModel, type, reason);
      if (context.logger.isLevelEnabled('debug')) {
        context.logger.debug(
          {
            reqId: context.request.requestId,
            decision: type,
            reason,
            detail,
            decode: d.targets[0].hostPort,
            prefill: p?.targets[0]?.hostPort,
            encodeReason: n.encode?.reason,
          },
          'disaggregation decision',
        );
      }
      const out = new Map([[decode, d]]);
      if (p) out.set(prefill, p);
      if (e) out.set(encode, e);
      const result = { primaryProfile: decode, results: out };
      return hooks.finish ? hooks.finish(context, result) : result;
    },

    preRequest(context: SchedulingContext, result: SchedulingResult) {
      writeDisaggHeaders(context.request.headers, result, prefill, encode);
    },

    validateProfiles: (names) =>
      names.includes(decode)
        ? undefined
        : `disagg-profile-handler "${ctx.name}": decode profile "${decode}" is not among the scheduling profiles (${names.join(', ')})`,
  };
}

export const disaggProfileHandler = definePlugin({
  kind: 'profile-handler',
  requires: [PREFIX_MATCH_DATA],
  description: 'Decode first, then a decider-gated prefill (and encode) stage; writes the P/D routing headers.',
  params: disaggParams,
  create: (ctx, settings) => createDisaggHandler(ctx, settings),
});
