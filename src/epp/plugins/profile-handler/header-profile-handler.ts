/**
 * `header-profile-handler` (llm-d-router): runs exactly one scheduling profile per request, the one a request header
 * names, for callers that already know which stage a call is for (the coordinator's one call per stage). With a single
 * profile, that profile always runs. Otherwise the header value (trimmed, matched exactly) picks the profile; a missing
 * or blank header runs `defaultProfile`; a value naming no profile (or a default that is not one) runs nothing and the
 * request fails as upstream's scheduler fails it: 429 `failed to find target endpoint: failed to run any scheduler
 * profile for request <x-request-id>` (upstream's README says the handler's own reason would be returned and that 400
 * would be more accurate; its code does this, checked against it in test/interop/plugins-differential.test.ts). The
 * reason is logged. No routing headers are written: nothing downstream reads pod addresses from them.
 *
 * Parameters: `headerName` (`EPP-Profile`, matched case-insensitively), `defaultProfile` (`decode`). A default that is
 * not a configured profile (with several profiles) is warned about at load: headerless requests then fail.
 */
import { z } from 'zod';
import { InferenceError } from '../../framework/errors.js';
import type { ProfileHandler } from '../../framework/types.js';
import { definePlugin } from '../definition.js';

export const headerProfileHandler = definePlugin({
  kind: 'profile-handler',
  description: 'Runs the one profile a request header names (default profile without the header).',
  params: z
    .object({
      headerName: z
        .string()
        .default('')
        .transform((header) => header.trim().toLowerCase() || 'epp-profile'),
      defaultProfile: z
        .string()
        .default('')
        .transform((profile) => profile.trim() || 'decode'),
    })
    .strict(),
  create: (ctx, params): ProfileHandler => {
    const named = (headers: Record<string, string>) => (headers[params.headerName] ?? '').trim();
    const notFound = (value: string) =>
      value === ''
        ? `header profile handler: defaultProfile "${params.defaultProfile}" is not a configured scheduling profile`
        : `header profile handler: no scheduling profile configured for "${params.headerName}" header value "${value}"`;
    return {
      type: ctx.type,
      name: ctx.name,
      pickProfiles(cycle, profiles, results) {
        if (results.size > 0) return [];
        if (profiles.size === 1) return [...profiles.keys()];
        const want = named(cycle.request.headers) || params.defaultProfile;
        if (profiles.has(want)) return [want];
        cycle.logger.info(
          {
            reqId: cycle.request.requestId,
            error: notFound(named(cycle.request.headers)),
            profiles: [...profiles.keys()].sort(),
          },
          'no scheduling profile selected for request',
        );
        return [];
      },
      processResults(cycle, results) {
        // The one profile that ran (pickProfiles never asks for more).
        for (const [name, result] of results) {
          if (result) return { primaryProfile: name, results: new Map([[name, result]]) };
          const err = cycle.profileErrors.get(name);
          if (err instanceof InferenceError) throw err;
          throw new InferenceError(
            'ResourceExhausted',
            `failed to find target endpoint: failed to run scheduler profile '${name}'`,
          );
        }
        // Nothing ran: upstream's scheduler fails the request itself, before the handler sees the results.
        throw new InferenceError(
          'ResourceExhausted',
          `failed to find target endpoint: failed to run any scheduler profile for request ${cycle.request.requestId}`,
        );
      },
      validateProfiles(names) {
        if (names.length > 1 && !names.includes(params.defaultProfile)) {
          ctx.warn(
            `defaultProfile "${params.defaultProfile}" is not a scheduling profile (${names.join(', ')}): requests without the ${params.headerName} header will fail`,
          );
        }
        return undefined;
      },
    };
  },
});
