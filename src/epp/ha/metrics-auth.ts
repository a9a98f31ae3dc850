/**
 * `/metrics` authentication and authorization as upstream's EPP does it (controller-runtime's
 * filters.WithAuthenticationAndAuthorization, `--metrics-endpoint-auth`): the bearer token goes to a TokenReview; the
 * user it names must be allowed `get` on the non-resource URL `/metrics` by a SubjectAccessReview.
 *
 * - 401 `Unauthorized` without a bearer token or for a token the API server does not accept; 403 `Authorization denied
 *   for user <name>` without the permission; 500 when a review itself fails (upstream's three answers and texts); 503
 *   when more distinct tokens are under review at once than --metrics-auth-cache-size (pd-router's bound).
 * - Outcomes are cached per token (SHA-256 of it) for --metrics-auth-cache-ttl, at most --metrics-auth-cache-size
 *   tokens (the oldest go first); concurrent requests with one token share one review. Failed reviews are not cached.
 * - Permissions: at start (and again after a review is forbidden) a probe TokenReview and SubjectAccessReview check
 *   that this EPP may create them; until they succeed the missing permission is logged by name and the probe retried
 *   with backoff (500 ms doubling to 30 s), and scrapes get 500. Readiness does not depend on it: GAIE's chart with
 *   default values enables auth without granting the reviews, and upstream's EPP serves traffic there.
 */
import { createHash } from 'node:crypto';
import type * as k8s from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { KubeClient, type KubeConnection } from '../../common/kubernetes/index.js';
import { apiMessage, apiStatus } from './kube-errors.js';

export interface MetricsAuthSettings {
  cacheTtlMs: number;
  cacheSize: number;
  /** Deadline of each TokenReview or SubjectAccessReview. */
  timeoutMs: number;
}

export interface AuthOutcome {
  status: 200 | 401 | 403 | 500 | 503;
  /** The answer's body (upstream's texts); empty for 200. */
  message: string;
  user?: string;
}

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;
const PROBE_TOKEN = 'pd-router-metrics-auth-permission-probe';

export class MetricsAuthorizer {
  private readonly client: KubeClient;
  private readonly cache = new Map<string, { expires: number; outcome: AuthOutcome }>();
  private readonly pending = new Map<string, Promise<AuthOutcome>>();
  private permitted = false;
  private lastProblem?: string;
  private probeTimer?: NodeJS.Timeout;
  private probing = false;
  private backoffMs = MIN_BACKOFF_MS;
  private stopped = false;

  constructor(
    connection: KubeConnection,
    private readonly settings: MetricsAuthSettings,
    private readonly logger: Logger,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.client = new KubeClient(connection);
  }

  private createTokenReview(body: k8s.V1TokenReview): Promise<k8s.V1TokenReview> {
    return this.client.create('/apis/authentication.k8s.io/v1/tokenreviews', body, {
      timeoutMs: this.settings.timeoutMs,
    });
  }

  private createSubjectAccessReview(body: k8s.V1SubjectAccessReview): Promise<k8s.V1SubjectAccessReview> {
    return this.client.create('/apis/authorization.k8s.io/v1/subjectaccessreviews', body, {
      timeoutMs: this.settings.timeoutMs,
    });
  }

  /** Both reviews may be created (the permission probe succeeded); false while a permission is missing. */
  ready(): boolean {
    return this.permitted;
  }

  problem(): string | undefined {
    return this.lastProblem;
  }

  start(): void {
    void this.probe();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.probeTimer);
    void this.client.close();
  }

  /** Decides a request by its Authorization header, method and path. */
  async check(authorization: string | undefined, method: string, path: string): Promise<AuthOutcome> {
    const m = /^bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!m) return { status: 401, message: 'Unauthorized' };
    const verb = method.toLowerCase();
    const key = createHash('sha256').update(m[1]).update('\0').update(verb).update('\0').update(path).digest('hex');
    const hit = this.cache.get(key);
    if (hit) {
      if (hit.expires > this.now()) return hit.outcome;
      this.cache.delete(key);
    }
    let p = this.pending.get(key);
    // One review in flight per token; a flood of distinct tokens is bounded like the cache.
    if (!p && this.pending.size >= Math.max(1, this.settings.cacheSize))
      return { status: 503, message: 'Too many token reviews in flight' };
    if (!p) {
      p = this.review(m[1], verb, path).then((outcome) => {
        if (outcome.status !== 500) this.remember(key, outcome);
        return outcome;
      });
      this.pending.set(key, p);
      void p.finally(() => this.pending.delete(key));
    }
    return p;
  }

  private remember(key: string, outcome: AuthOutcome): void {
    if (this.settings.cacheSize <= 0 || this.settings.cacheTtlMs <= 0) return;
    while (this.cache.size >= this.settings.cacheSize) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, { expires: this.now() + this.settings.cacheTtlMs, outcome });
  }

  private async review(token: string, verb: string, path: string): Promise<AuthOutcome> {
    let user: k8s.V1UserInfo | undefined;
    try {
      const tr = await this.createTokenReview({
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token },
      });
      if (!tr.status?.authenticated) return { status: 401, message: 'Unauthorized' };
      user = tr.status.user ?? {};
    } catch (err) {
      this.reviewFailed('tokenreviews.authentication.k8s.io', err);
      return { status: 500, message: 'Authentication failed' };
    }
    const name = user.username ?? '';
    try {
      const sar = await this.createSubjectAccessReview({
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec: {
          user: user.username,
          uid: user.uid,
          groups: user.groups,
          extra: user.extra,
          nonResourceAttributes: { path, verb },
        },
      });
      if (!sar.status?.allowed) {
        this.logger.debug({ user: name, reason: sar.status?.reason }, 'metrics: authorization denied');
        return { status: 403, message: `Authorization denied for user ${name}`, user: name };
      }
      return { status: 200, message: '', user: name };
    } catch (err) {
      this.reviewFailed('subjectaccessreviews.authorization.k8s.io', err);
      return { status: 500, message: `Authorization for user ${name} failed`, user: name };
    }
  }

  private reviewFailed(resource: string, err: unknown): void {
    this.logger.error(
      { status: apiStatus(err), error: apiMessage(err) },
      `metrics auth: creating a ${resource} failed`,
    );
    // Forbidden: the permission was taken away; probe (and log) until it is back.
    if (apiStatus(err) === 403 && this.permitted) {
      this.permitted = false;
      this.backoffMs = MIN_BACKOFF_MS;
      void this.probe();
    }
  }

  /** Creates one review of each kind that decides nothing, to learn whether this EPP may create them. */
  private async probe(): Promise<void> {
    if (this.probing || this.stopped) return;
    this.probing = true;
    let resource = 'tokenreviews.authentication.k8s.io';
    try {
      await this.createTokenReview({
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token: PROBE_TOKEN },
      });
      resource = 'subjectaccessreviews.authorization.k8s.io';
      await this.createSubjectAccessReview({
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec: { user: 'system:anonymous', nonResourceAttributes: { path: '/metrics', verb: 'get' } },
      });
      this.permitted = true;
      if (this.lastProblem) this.logger.info('metrics auth: TokenReview and SubjectAccessReview allowed again');
      this.lastProblem = undefined;
      this.backoffMs = MIN_BACKOFF_MS;
    } catch (err) {
      const status = apiStatus(err);
      const problem =
        status === 403
          ? `missing RBAC permission: create ${resource} (cluster-wide; needed by --metrics-endpoint-auth): ${apiMessage(err)}`
          : `cannot create ${resource} for --metrics-endpoint-auth: ${apiMessage(err)}`;
      if (problem !== this.lastProblem)
        this.logger.warn({ status, problem, retryInMs: this.backoffMs }, 'metrics auth: not ready; retrying');
      this.lastProblem = problem;
      if (!this.stopped) {
        this.probeTimer = setTimeout(() => void this.probe(), this.backoffMs);
        this.backoffMs = Math.min(MAX_BACKOFF_MS, this.backoffMs * 2);
      }
    } finally {
      this.probing = false;
    }
  }
}
