/** Every shard namespace comes with its fences: a ResourceQuota and a default-deny NetworkPolicy. */
import * as k8s from "@pulumi/kubernetes";
import type {
  PolicyResource,
  ReportViolation,
  StackValidationArgs,
  StackValidationPolicy,
} from "@pulumi/policy";
import type * as pulumi from "@pulumi/pulumi";
import { isShardNamespace } from "./shard-ttl";

type NetworkPolicySpec = pulumi.Unwrap<k8s.types.input.networking.v1.NetworkPolicySpec>;

/** True when the policy selects every pod and allows no ingress at all. */
export function isDefaultDenyIngress(spec: NetworkPolicySpec | undefined): boolean {
  if (spec === undefined) return false;
  const selector = spec.podSelector ?? {};
  const selectsAll =
    Object.keys(selector.matchLabels ?? {}).length === 0 &&
    (selector.matchExpressions ?? []).length === 0;
  // Without policyTypes, Ingress is implied.
  const ingressType = spec.policyTypes === undefined || spec.policyTypes.includes("Ingress");
  return selectsAll && ingressType && (spec.ingress ?? []).length === 0;
}

/** Report each shard namespace of the stack that lacks a quota or a default-deny policy. */
export function checkShardFences(resources: PolicyResource[], report: ReportViolation): void {
  const quotaNamespaces = new Set<string>();
  const denyNamespaces = new Set<string>();
  for (const r of resources) {
    const quota = r.asType(k8s.core.v1.ResourceQuota);
    if (quota?.metadata?.namespace !== undefined) quotaNamespaces.add(quota.metadata.namespace);
    const netpol = r.asType(k8s.networking.v1.NetworkPolicy);
    if (netpol?.metadata?.namespace !== undefined && isDefaultDenyIngress(netpol.spec))
      denyNamespaces.add(netpol.metadata.namespace);
  }
  for (const r of resources) {
    const namespace = r.asType(k8s.core.v1.Namespace);
    if (namespace === undefined || !isShardNamespace(namespace.metadata)) continue;
    const name = namespace.metadata?.name;
    if (name === undefined) {
      report(
        `a shard namespace has no metadata.name, so its quota and network policy cannot be checked; name it shard-<name>`,
        r.urn,
      );
      continue;
    }
    if (!quotaNamespaces.has(name))
      report(
        `shard namespace "${name}" has no ResourceQuota; add one so the shard cannot take the whole cluster`,
        r.urn,
      );
    if (!denyNamespaces.has(name))
      report(
        `shard namespace "${name}" has no default-deny NetworkPolicy (podSelector {}, policyTypes [Ingress], no ingress rules); add one so only what is allowed can reach the shard`,
        r.urn,
      );
  }
}

/** The validate function over the whole stack. */
export function validateShardFences(
  args: StackValidationArgs,
  reportViolation: ReportViolation,
): void {
  checkShardFences(args.resources, reportViolation);
}

/** Policy: shard namespaces have a ResourceQuota and a default-deny NetworkPolicy. */
export const shardNamespaceFences: StackValidationPolicy = {
  name: "shard-namespace-fences",
  description:
    "A shard namespace without a ResourceQuota can starve every other shard, and one without a default-deny NetworkPolicy can be reached by any pod in the cluster.",
  enforcementLevel: "mandatory",
  validateStack: validateShardFences,
};
