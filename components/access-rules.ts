/**
 * The access model as plain data, with no Pulumi runtime import: the ClusterRoles' names and
 * rules, the JIT ceiling and the expiry check (the JIT label is `JIT_LABEL` in `./common`). The `AccessControl`/`JitGrant` components, the
 * access reaper and the `shardworks access` CLI all read it from here, so a test that creates
 * these roles on a real API server uses exactly what production gets.
 */

/** The names of the Shardworks ClusterRoles. */
export const ClusterRoleName = {
  PlatformAdmin: "shardworks:platform-admin",
  ShardOwner: "shardworks:shard-owner",
  ShardViewer: "shardworks:shard-viewer",
} as const;
/** One of {@link ClusterRoleName}. */
export type ClusterRoleName = (typeof ClusterRoleName)[keyof typeof ClusterRoleName];

/** Default and ceiling of a JIT grant's length: 8 hours. */
export const DEFAULT_MAX_JIT_MS = 8 * 3_600_000;

/** An RBAC rule, shaped like both `@pulumi/kubernetes` inputs and `@kubernetes/client-node`. */
export interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  nonResourceURLs?: string[];
  verbs: string[];
}

const ALL_WRITE = ["get", "list", "watch", "create", "update", "patch", "delete"];
const READ = ["get", "list", "watch"];

/** The rules of each Shardworks ClusterRole. */
export const CLUSTER_ROLE_RULES: Record<ClusterRoleName, PolicyRule[]> = {
  [ClusterRoleName.PlatformAdmin]: [
    { apiGroups: ["*"], resources: ["*"], verbs: ["*"] },
    { nonResourceURLs: ["*"], verbs: ["*"] },
  ],
  // Workloads and their config in the shard, never RBAC itself.
  [ClusterRoleName.ShardOwner]: [
    {
      apiGroups: [""],
      resources: [
        "pods",
        "pods/log",
        "pods/exec",
        "pods/portforward",
        "services",
        "configmaps",
        "secrets",
        "persistentvolumeclaims",
      ],
      verbs: ALL_WRITE,
    },
    { apiGroups: [""], resources: ["events", "serviceaccounts"], verbs: READ },
    {
      apiGroups: ["apps"],
      resources: ["deployments", "replicasets", "statefulsets"],
      verbs: ALL_WRITE,
    },
    { apiGroups: ["batch"], resources: ["jobs", "cronjobs"], verbs: ALL_WRITE },
  ],
  // Read workloads, logs and events; no secrets.
  [ClusterRoleName.ShardViewer]: [
    {
      apiGroups: [""],
      resources: ["pods", "pods/log", "services", "configmaps", "events"],
      verbs: READ,
    },
    { apiGroups: ["apps"], resources: ["deployments", "replicasets", "statefulsets"], verbs: READ },
  ],
};

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** An RFC 3339 time as a Date, or undefined when `value` is not one. */
export function parseRfc3339(value: string): Date | undefined {
  const at = new Date(value);
  return RFC3339.test(value) && !Number.isNaN(at.getTime()) ? at : undefined;
}

/**
 * Check a JIT grant's expiry: RFC 3339, in the future, at most `maxMs` ahead of `now`.
 * Returns the expiry, or why it is refused.
 */
export function checkJitExpiry(
  expiresAt: string,
  now: Date,
  maxMs: number,
): { at: Date } | { reason: string } {
  const at = parseRfc3339(expiresAt);
  if (at === undefined) {
    return {
      reason: `${JSON.stringify(expiresAt)} is not an RFC 3339 time, e.g. "2026-11-22T17:00:00Z"`,
    };
  }
  if (at.getTime() <= now.getTime()) {
    return { reason: `${expiresAt} is in the past (now is ${now.toISOString()})` };
  }
  if (at.getTime() - now.getTime() > maxMs) {
    return {
      reason: `${expiresAt} is more than ${maxMs / 3_600_000}h ahead; the maximum JIT grant is ${maxMs / 3_600_000}h`,
    };
  }
  return { at };
}
