/**
 * zod schemas for workload profiles and arrival processes: runLoad validates its options with them, and
 * `pd-router loadgen --profile-file` reads a profile (YAML or JSON) through them.
 */
import { z } from 'zod';
import type { ArrivalProcess, LengthDistribution, LoadRunOptions, WorkloadProfile } from './types.js';

const count = z.number().int().min(1);

const minMax = <T extends { min: number; max: number }>(d: T, ctx: z.RefinementCtx) => {
  if (d.min > d.max) ctx.addIssue({ code: 'custom', message: `min (${d.min}) exceeds max (${d.max})` });
};

export const lengthDistributionSchema: z.ZodType<LengthDistribution> = z.union([
  z.strictObject({ kind: z.literal('fixed'), value: count }),
  z.strictObject({ kind: z.literal('uniform'), min: count, max: count }).superRefine(minMax),
  z.strictObject({ kind: z.literal('normal'), mean: z.number().min(0), std: z.number().min(0), min: count, max: count }).superRefine(minMax),
  z.strictObject({ kind: z.literal('lognormal'), mean: z.number().positive(), std: z.number().min(0), min: count, max: count }).superRefine(minMax),
]);

export const arrivalSchema: z.ZodType<ArrivalProcess> = z.union([
  z.strictObject({ kind: z.literal('constant'), rate: z.number().positive().finite() }),
  z.strictObject({ kind: z.literal('poisson'), rate: z.number().positive().finite() }),
  z.strictObject({ kind: z.literal('concurrency'), concurrency: count }),
]);

export const workloadProfileSchema: z.ZodType<WorkloadProfile> = z.strictObject({
  name: z.string().min(1),
  description: z.string().default(''),
  api: z.enum(['chat', 'completions']),
  inputTokens: lengthDistributionSchema,
  outputTokens: lengthDistributionSchema,
  sharedPrefix: z.strictObject({ groups: count, prefixTokens: count }).optional(),
  suggested: z
    .strictObject({ arrival: arrivalSchema, requests: count.optional(), durationSeconds: z.number().positive().optional() })
    .optional(),
}) as z.ZodType<WorkloadProfile>;

function issues(e: z.ZodError, where: string): string {
  return e.issues.map((i) => `${where}${i.path.length > 0 ? '.' + i.path.join('.') : ''}: ${i.message}`).join('; ');
}

/** Throws an Error naming every problem with the options of a run. */
export function validateRunOptions(o: LoadRunOptions): void {
  const problems: string[] = [];
  try {
    const u = new URL(o.baseUrl);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') problems.push(`baseUrl ${o.baseUrl}: expected http or https`);
  } catch {
    problems.push(`baseUrl ${JSON.stringify(o.baseUrl)} is not a URL`);
  }
  if (typeof o.model !== 'string' || o.model === '') problems.push('model is required');
  const p = workloadProfileSchema.safeParse(o.profile);
  if (!p.success) problems.push(issues(p.error, 'profile'));
  const a = arrivalSchema.safeParse(o.arrival);
  if (!a.success) problems.push(issues(a.error, 'arrival'));
  if (o.requests === undefined && o.durationSeconds === undefined) problems.push('give requests, durationSeconds or both');
  if (o.requests !== undefined && !(Number.isInteger(o.requests) && o.requests >= 1)) problems.push(`requests must be a positive integer, got ${o.requests}`);
  if (o.durationSeconds !== undefined && !(o.durationSeconds > 0)) problems.push(`durationSeconds must be positive, got ${o.durationSeconds}`);
  if (o.timeScale !== undefined && !(o.timeScale > 0 && Number.isFinite(o.timeScale))) problems.push(`timeScale must be positive, got ${o.timeScale}`);
  if (o.requestTimeoutMs !== undefined && !(o.requestTimeoutMs > 0)) problems.push(`requestTimeoutMs must be positive, got ${o.requestTimeoutMs}`);
  if (o.maxConcurrency !== undefined && !(Number.isInteger(o.maxConcurrency) && o.maxConcurrency >= 1)) {
    problems.push(`maxConcurrency must be a positive integer, got ${o.maxConcurrency}`);
  }
  if (problems.length > 0) throw new Error(`invalid load run options: ${problems.join('; ')}`);
}
