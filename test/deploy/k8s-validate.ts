/**
 * Validation of rendered Kubernetes objects against the Kubernetes API schemas:
 * - kubernetes-models (and @kubernetes-models/gateway-api for HTTPRoute) check types, required fields and formats;
 * - @kubernetes/client-node's generated models list every field of every type (from the Kubernetes OpenAPI), which
 *   catches unknown (misspelt) fields kubernetes-models lets through;
 * - InferencePool (inference.networking.k8s.io/v1), a CRD neither library knows, is checked against a schema written
 *   from the Gateway API Inference Extension v1 API reference.
 */
import * as k8s from '@kubernetes/client-node';
import { z } from 'zod';
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, Service, ServiceAccount } from 'kubernetes-models/v1';
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { HTTPRoute } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1';

type Obj = { apiVersion: string; kind: string; metadata: { name: string; [k: string]: unknown }; [k: string]: unknown };

const MODELS: Record<string, { model: new (options: never) => { validate(): void }; root: string }> = {
  'apps/v1/Deployment': { model: Deployment as never, root: 'V1Deployment' },
  'v1/Service': { model: Service as never, root: 'V1Service' },
  'v1/ConfigMap': { model: ConfigMap as never, root: 'V1ConfigMap' },
  'v1/ServiceAccount': { model: ServiceAccount as never, root: 'V1ServiceAccount' },
  'rbac.authorization.k8s.io/v1/Role': { model: Role as never, root: 'V1Role' },
  'rbac.authorization.k8s.io/v1/RoleBinding': { model: RoleBinding as never, root: 'V1RoleBinding' },
  'rbac.authorization.k8s.io/v1/ClusterRole': { model: ClusterRole as never, root: 'V1ClusterRole' },
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': { model: ClusterRoleBinding as never, root: 'V1ClusterRoleBinding' },
  'gateway.networking.k8s.io/v1/HTTPRoute': { model: HTTPRoute as never, root: '' },
};

/** Label keys: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters (Kubernetes qualified name). */
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const labels = z.record(z.string().regex(LABEL_KEY), z.string().max(63).regex(LABEL_VALUE));

/** InferencePool v1 (GIE `api/v1/inferencepool_types.go`). */
const InferencePool = z.strictObject({
  apiVersion: z.literal('inference.networking.k8s.io/v1'),
  kind: z.literal('InferencePool'),
  metadata: z.looseObject({ name: z.string().min(1).max(253) }),
  spec: z.strictObject({
    selector: z.strictObject({ matchLabels: labels.refine((match) => Object.keys(match).length > 0, 'at least one label') }),
    targetPorts: z.array(z.strictObject({ number: z.number().int().min(1).max(65535) })).min(1).max(8),
    appProtocol: z.enum(['http', 'kubernetes.io/h2c']).optional(),
    endpointPickerRef: z.strictObject({
      group: z.string().optional(),
      kind: z.string().optional(),
      name: z.string().min(1).max(253),
      port: z.strictObject({ number: z.number().int().min(1).max(65535) }).optional(),
      failureMode: z.enum(['FailOpen', 'FailClose']).optional(),
    }),
  }),
  status: z.unknown().optional(),
});

/** Fields of `value` the Kubernetes type does not have (by the client-node model field lists). */
function unknownFields(type: string, value: unknown, path: string, out: string[]): void {
  const m = /^Array<(.+)>$/.exec(type);
  if (m) {
    if (Array.isArray(value)) value.forEach((value, i) => unknownFields(m[1]!, value, `${path}[${i}]`, out));
    return;
  }
  const model = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => Array<{ baseName: string; type: string }> }>)[type];
  if (!model?.getAttributeTypeMap || typeof value !== 'object' || value === null) return;
  const fields = new Map(model.getAttributeTypeMap().map((left) => [left.baseName, left.type]));
  for (const [k, v] of Object.entries(value)) {
    const t = fields.get(k);
    if (t === undefined) out.push(`${path}.${k}: not a field of ${type}`);
    else unknownFields(t, v, `${path}.${k}`, out);
  }
}

/** All problems with one rendered object. */
export function validateObject(obj: Record<string, any>): string[] {
  const o = obj as Obj;
  const where = `${o.kind}/${o.metadata?.name}`;
  if (o.kind === 'InferencePool') {
    const r = InferencePool.safeParse(o);
    return r.success ? [] : r.error.issues.map((i) => `${where}: ${i.path.join('.')}: ${i.message}`);
  }
  const entry = MODELS[`${o.apiVersion}/${o.kind}`];
  if (!entry) return [`${where}: no schema for ${o.apiVersion} ${o.kind}`];
  const errors: string[] = [];
  try {
    new entry.model(o as never).validate();
  } catch (e) {
    errors.push(`${where}: ${(e as Error).message}`);
  }
  if (entry.root) unknownFields(entry.root, o, where, errors);
  return errors;
}
