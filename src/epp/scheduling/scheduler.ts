/**
 * The scheduler loop (llm-d `scheduler.go`): ask the profile handler which profiles to run, run them, store each
 * result (null on failure, keeping the error), repeat until the handler returns none, then let the handler turn the
 * results into the final answer.
 */
import { InferenceError } from '../framework/errors.js';
import type {
  Endpoint,
  ProfileHandler,
  ProfileResults,
  SchedulingContext,
  SchedulingResult,
} from '../framework/types.js';
import type { PluginTimer } from './plugin-timer.js';
import type { SchedulerProfile } from './profile.js';

export class Scheduler {
  constructor(
    readonly profiles: ReadonlyMap<string, SchedulerProfile>,
    readonly handler: ProfileHandler,
    private readonly timer: PluginTimer,
  ) {}

  schedule(ctx: SchedulingContext, candidates: readonly Endpoint[]): SchedulingResult {
    const results: ProfileResults = new Map();
    // A handler that keeps asking for profiles would loop forever; each profile can run at most once.
    for (let round = 0; round <= this.profiles.size; round++) {
      const next = this.timer.time('ProfilePicker', this.handler, () =>
        this.handler.pickProfiles(ctx, this.profiles, results, candidates),
      );
      if (next.length === 0)
        return this.timer.time('ProcessProfilesResults', this.handler, () => this.handler.processResults(ctx, results));
      for (const name of next) {
        const profile = this.profiles.get(name);
        if (!profile || results.has(name))
          throw new InferenceError(
            'Internal',
            `profile handler ${this.handler.name} asked for profile "${name}" twice or unknown`,
          );
        try {
          results.set(name, profile.run(ctx, candidates));
        } catch (e) {
          results.set(name, null);
          ctx.profileErrors.set(name, e as Error);
        }
      }
    }
    throw new InferenceError('Internal', `profile handler ${this.handler.name} did not finish`);
  }
}
