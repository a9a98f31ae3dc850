/**
 * zod schemas for workload profiles and arrival processes: runLoad validates its options with them, and
 * `pd-router loadgen --profile-file` reads a profile (YAML or JSON) through them.
 */
import { z } from 'zod';
import type { ArrivalProcess, LengthDistribution, LoadRunOptions, WorkloadProfile } from './types.js';

const count = z.number().int().min(1);

const minMax = <T extends { min: number; max: number }>(def: T, ctx: z.RefinementCtx) => {
  if (def.min > def.max) ctx.addIssue({ code: 'custom', message: `min (${def.min}) exceeds max (${def.max})` });
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

function issues(zodError: z.ZodError, where: string): string {
  return zodError.issues.map((i) => `${where}${i.path.length > 0 ? '.' + i.path.join('.') : ''}: ${i.message}`).join('; ');
}

/** Throws an Error naming every problem with the options of a run. */
export function validateRunOptions(options: LoadRunOptions): void {
  const problems: string[] = [];
  try {
    const u = new URL(options.baseUrl);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') problems.push(`baseUrl ${options.baseUrl}: expected http or https`);
  } catch {
    problems.push(`baseUrl ${JSON.stringify(options.baseUrl)} is not a URL`);
  }
  if (typeof options.model !== 'string' || options.model === '') problems.push('model is required');
  const p = workloadProfileSchema.safeParse(options.profile);
  if (!p.success) problems.push(issues(p.error, 'profile'));
  const a = arrivalSchema.safeParse(options.arrival);
  if (!a.success) problems.push(issues(a.error, 'arrival'));
  if (options.requests === undefined && options.durationSeconds === undefined) problems.push('give requests, durationSeconds or both');
  if (options.requests !== undefined && !(Number.isInteger(options.requests) && options.requests >= 1)) problems.push(`requests must be a positive integer, got ${options.requests}`);
  if (options.durationSeconds !== undefined && !(options.durationSeconds > 0)) problems.push(`durationSeconds must be positive, got ${options.durationSeconds}`);
  if (options.timeScale !== undefined && !(options.timeScale > 0 && Number.isFinite(options.timeScale))) problems.push(`timeScale must be positive, got ${options.timeScale}`);
  if (options.requestTimeoutMs !== undefined && !(options.requestTimeoutMs > 0)) problems.push(`requestTimeoutMs must be positive, got ${options.requestTimeoutMs}`);
  if (options.maxConcurrency !== undefined && !(Number.isInteger(options.maxConcurrency) && options.maxConcurrency >= 1)) {
    problems.push(`maxConcurrency must be a positive integer, got ${options.maxConcurrency}`);
  }
  if (problems.length > 0) throw new Error(`invalid load run options: ${problems.join('; ')}`);
}
