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

/** Longest JIT grant maximum a platform may configure: 24 hours. */
export const MAX_JIT_CEILING_MS = 86_400_000;

// RFC 3339 allows lowercase `t` and `z` (section 5.6); the parts are range-checked one by one,
// because `Date` silently rolls an impossible day such as 2026-02-30 over into March.
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$/;

function isRealTime(match: RegExpExecArray): boolean {
  const [y, mo, d, h, mi, s] = match.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const daysInMonth = new Date(Date.UTC(y, mo, 0)).getUTCDate();
  const offsetOk = match[9] === undefined || (Number(match[9]) <= 23 && Number(match[10]) <= 59);
  return (
    mo >= 1 && mo <= 12 && d >= 1 && d <= daysInMonth && h <= 23 && mi <= 59 && s <= 59 && offsetOk
  );
}

/** An RFC 3339 time as a Date, or undefined when `value` is not a real one. */
export function parseRfc3339(value: string): Date | undefined {
  const match = typeof value === "string" ? RFC3339.exec(value) : null;
  if (match === null || !isRealTime(match)) return undefined;
  const at = new Date(value.toUpperCase());
  return Number.isNaN(at.getTime()) ? undefined : at;
}

/** Why a JIT ceiling is refused (a finite number of ms in `(0, MAX_JIT_CEILING_MS]`), if it is. */
export function checkJitMaxDuration(maxMs: number): string | undefined {
  return typeof maxMs === "number" &&
    Number.isFinite(maxMs) &&
    maxMs > 0 &&
    maxMs <= MAX_JIT_CEILING_MS
    ? undefined
    : `${String(maxMs)} must be a number of milliseconds above 0 and at most ${MAX_JIT_CEILING_MS} (24h)`;
}

/**
 * Check a JIT grant's expiry: RFC 3339, in the future (unless `pastAllowed`), at most `maxMs`
 * ahead of `now`. Returns the expiry, or why it is refused (and which field is at fault).
 */
export function checkJitExpiry(
  expiresAt: string,
  now: Date,
  maxMs: number,
  { pastAllowed = false }: { pastAllowed?: boolean } = {},
): { at: Date } | { reason: string; field: "expiresAt" | "maxDurationMs" } {
  const badMax = checkJitMaxDuration(maxMs);
  if (badMax !== undefined) return { reason: badMax, field: "maxDurationMs" };
  const at = parseRfc3339(expiresAt);
  if (at === undefined) {
    return {
      field: "expiresAt",
      reason: `${JSON.stringify(expiresAt)} is not an RFC 3339 time, e.g. "2026-11-22T17:00:00Z"`,
    };
  }
  if (!pastAllowed && at.getTime() <= now.getTime()) {
    return {
      field: "expiresAt",
      reason: `${expiresAt} is in the past (now is ${now.toISOString()})`,
    };
  }
  if (at.getTime() - now.getTime() > maxMs) {
    return {
      field: "expiresAt",
      reason: `${expiresAt} is more than ${maxMs / 3_600_000}h ahead; the maximum JIT grant is ${maxMs / 3_600_000}h`,
    };
  }
  return { at };
}
