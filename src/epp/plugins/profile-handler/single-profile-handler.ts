/**
 * `single-profile-handler`: runs the one configured profile once; its result is the answer. The loader adds it when a
 * config has a single profile and no handler. No parameters.
 */
import { z } from 'zod';
import { InferenceError } from '../../framework/errors.js';
import type { ProfileHandler } from '../../framework/types.js';
import { definePlugin } from '../definition.js';

export const singleProfileHandler = definePlugin({
  kind: 'profile-handler',
  description: 'Runs the single profile.',
  params: z.object({}).strict(),
  create: (ctx): ProfileHandler => ({
    type: ctx.type,
    name: ctx.name,
    pickProfiles: (_context, profiles, results) => (results.size === 0 ? [...profiles.keys()].slice(0, 1) : []),
    processResults(context, results) {
      const [name, result] = [...results.entries()][0] ?? [];
      if (name !== undefined && result) return { primaryProfile: name, results: new Map([[name, result]]) };
      const err = name !== undefined ? context.profileErrors.get(name) : undefined;
      if (err instanceof InferenceError) throw err;
      throw new InferenceError('ResourceExhausted', `failed to find target endpoint: ${err?.message ?? 'no profile result'}`);
    },
    validateProfiles: (names) => (names.length === 1 ? undefined : `single-profile-handler needs exactly one scheduling profile, found ${names.length}`),
  }),
});
