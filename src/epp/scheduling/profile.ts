/**
 * A scheduling profile: filters in sequence (stopping when nothing is left), then the un-normalized weighted sum of
 * the scorers' clamped scores, Σ weight × clamp(score, 0, 1) (llm-d `scheduler_profile.go`, `enforceScoreRange`),
 * then the picker.
 */
import { noEndpointsAfterFilters } from '../framework/errors.js';
import type {
  Endpoint,
  Filter,
  Picker,
  ProfileRunResult,
  SchedulerProfileView,
  SchedulingContext,
  Scorer,
} from '../framework/types.js';
import type { PluginTimer } from './plugin-timer.js';

export interface WeightedScorer {
  scorer: Scorer;
  weight: number;
}

export class SchedulerProfile implements SchedulerProfileView {
  constructor(
    readonly name: string,
    readonly filters: readonly Filter[],
    readonly scorers: readonly WeightedScorer[],
    readonly picker: Picker,
    private readonly timer: PluginTimer,
  ) {}

  filter(ctx: SchedulingContext, candidates: readonly Endpoint[]): Endpoint[] {
    let endpoints = candidates as Endpoint[];
    for (const f of this.filters) {
      endpoints = this.timer.time('Filter', f, () => f.filter(ctx, endpoints));
      if (endpoints.length === 0) break;
    }
    return endpoints;
  }

  /** Runs the profile; throws the 429 "no endpoints available" error when the filters leave nothing. */
  run(ctx: SchedulingContext, candidates: readonly Endpoint[]): ProfileRunResult {
    const endpoints = this.filter(ctx, candidates);
    if (endpoints.length === 0) throw noEndpointsAfterFilters();
    const totals = new Float64Array(endpoints.length);
    for (const { scorer, weight } of this.scorers) {
      const scores = this.timer.time('Scorer', scorer, () => scorer.score(ctx, endpoints));
      for (let i = 0; i < endpoints.length; i++) {
        let s = scores[i] ?? 0;
        if (!(s > 0))
          s = 0; // negative and NaN
        else if (s > 1) s = 1;
        totals[i] += weight * s;
      }
    }
    const scored = endpoints.map((endpoint, i) => ({ endpoint, score: totals[i] }));
    const result = this.timer.time('Picker', this.picker, () => this.picker.pick(ctx, scored));
    if (result.targets.length === 0) throw noEndpointsAfterFilters();
    return result;
  }
}
