/**
 * JIT grants made by people (`shardworks access grant|ls|revoke`): a RoleBinding in a shard's
 * namespace, or a ClusterRoleBinding, to one of the Shardworks ClusterRoles, annotated with its
 * expiry for the access reaper. The same shape as the `JitGrant` component makes.
 */
import { createHash } from "node:crypto";
import * as k8s from "@kubernetes/client-node";
import { z } from "zod";
import {
  checkJitExpiry,
  ClusterRoleName,
  DEFAULT_MAX_JIT_MS,
  EXPIRES_AT_ANNOTATION,
  JIT_LABEL,
  parseRfc3339,
} from "../../contract";
import { AccessError, formatDuration, jitDurationProblem } from "./duration";

/** Who made a CLI grant (the component's grants say `pulumi`). */
export const MANAGED_BY = "shardworks";
const RBAC_GROUP = "rbac.authorization.k8s.io";

/** `--role`: a Shardworks ClusterRole, by its short or full name. */
export const GrantRole = z
  .string()
  .transform((r) => r.replace(/^shardworks:/, ""))
  .pipe(
    z.enum(["platform-admin", "shard-owner", "shard-viewer"], {
      error: "must be platform-admin, shard-owner or shard-viewer",
    }),
  )
  .transform((r) => `shardworks:${r}` as ClusterRoleName);

/** `--to`: a user name as the cluster's authenticator reports it. */
export const GrantUser = z
  .string()
  .trim()
  .min(1, "must name a user, e.g. --to alice")
  .regex(/^[^\s/]+$/, "a user name has no spaces or '/'");

/** `--shard`: a shard name (a DNS label, as `DevShard` requires); the grant lands in `shard-<s>`. */
export const GrantShard = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9-]{0,55}[a-z0-9])?$/,
    "a shard name is a DNS label of at most 57 lowercase letters, digits or '-', e.g. alice",
  );

/** What {@link grantAccess} needs. */
export interface GrantRequest {
  /** Short (`shard-owner`) or full (`shardworks:shard-owner`) ClusterRole name. */
  role: string;
  /** User to bind. */
  to: string;
  /** Length of the grant, ms; more than 0 and at most `maxMs`. */
  forMs: number;
  /** Shard whose namespace (`shard-<shard>`) the grant is limited to; absent = cluster-wide. */
  shard?: string;
  /** Ceiling of `forMs`. Default {@link DEFAULT_MAX_JIT_MS} (8 h). */
  maxMs?: number;
  /** Clock. Default: now. */
  now?: Date;
}

/** One JIT binding as `access ls` shows it. */
export interface Grant {
  name: string;
  kind: "RoleBinding" | "ClusterRoleBinding";
  /** Namespace of a RoleBinding; absent for a ClusterRoleBinding. */
  namespace?: string;
  role: string;
  subjects: string[];
  /** The annotation as written (may be malformed). */
  expiresAt: string;
  /** ms until expiry (negative: overdue); undefined when the annotation is malformed. */
  remainingMs?: number;
}

function fieldError(flag: string, error: z.ZodError): AccessError {
  return new AccessError(`${flag}: ${error.issues[0]?.message ?? "invalid"}`);
}

function parseFlag<T>(schema: z.ZodType<T>, value: unknown, flag: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw fieldError(flag, parsed.error);
  return parsed.data;
}

/**
 * The binding name of a grant: the same role, user and place always give the same name, so
 * granting again renews the grant instead of piling up bindings. A user name that is not a
 * DNS-safe string gets a short hash so that `a@x` and `a.x` never collide.
 */
export function grantName(role: ClusterRoleName, user: string): string {
  const safe = user
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-")
    .slice(0, 40);
  const hash =
    safe === user ? "" : `-${createHash("sha256").update(user).digest("hex").slice(0, 8)}`;
  return `jit-${role.replace(/^shardworks:/, "")}-${safe}${hash}`;
}

function statusOf(error: unknown): number | undefined {
  return error instanceof k8s.ApiException ? error.code : undefined;
}

/** A {@link GrantRequest} after its checks. */
export interface CheckedGrant {
  role: ClusterRoleName;
  user: string;
  shard?: string;
  forMs: number;
  expiresAt: string;
}

/**
 * Check a grant request without touching the cluster: role, user, shard and length. Throws one
 * line naming the flag and the fix.
 */
export function checkGrantRequest(request: GrantRequest): CheckedGrant {
  const role = parseFlag(GrantRole, request.role, "--role");
  const user = parseFlag(GrantUser, request.to, "--to");
  const shard =
    request.shard === undefined ? undefined : parseFlag(GrantShard, request.shard, "--shard");
  const maxMs = request.maxMs ?? DEFAULT_MAX_JIT_MS;
  const problem = jitDurationProblem(request.forMs, maxMs);
  if (problem !== undefined) throw new AccessError(problem);
  const now = request.now ?? new Date();
  const expiresAt = new Date(now.getTime() + request.forMs).toISOString();
  // The same check the JitGrant component and the policy pack apply to every JIT binding.
  const checked = checkJitExpiry(expiresAt, now, maxMs);
  if ("reason" in checked) throw new AccessError(`--for: ${checked.reason}`);
  return { role, user, ...(shard === undefined ? {} : { shard }), forMs: request.forMs, expiresAt };
}

/** Create (or renew) a JIT grant; returns it. Refuses a bad role/user/shard/length with one line. */
export async function grantAccess(config: k8s.KubeConfig, request: GrantRequest): Promise<Grant> {
  const { role, user, shard, expiresAt } = checkGrantRequest(request);
  const name = grantName(role, user);
  const namespace = shard === undefined ? undefined : `shard-${shard}`;
  const metadata: k8s.V1ObjectMeta = {
    name,
    labels: { "app.kubernetes.io/managed-by": MANAGED_BY, [JIT_LABEL]: "true" },
    annotations: { [EXPIRES_AT_ANNOTATION]: expiresAt },
  };
  const body = {
    metadata,
    roleRef: { apiGroup: RBAC_GROUP, kind: "ClusterRole", name: role },
    subjects: [{ apiGroup: RBAC_GROUP, kind: "User", name: user }],
  };
  const rbac = config.makeApiClient(k8s.RbacAuthorizationV1Api);
  try {
    if (namespace === undefined) {
      await rbac.createClusterRoleBinding({ body }).catch(async (error: unknown) => {
        if (statusOf(error) !== 409) throw error;
        const old = await rbac.readClusterRoleBinding({ name });
        await rbac.replaceClusterRoleBinding({
          name,
          body: {
            ...body,
            metadata: { ...metadata, resourceVersion: old.metadata?.resourceVersion },
          },
        });
      });
    } else {
      await rbac
        .createNamespacedRoleBinding({
          namespace,
          body: { ...body, metadata: { ...metadata, namespace } },
        })
        .catch(async (error: unknown) => {
          if (statusOf(error) !== 409) throw error;
          const old = await rbac.readNamespacedRoleBinding({ name, namespace });
          await rbac.replaceNamespacedRoleBinding({
            name,
            namespace,
            body: {
              ...body,
              metadata: { ...metadata, namespace, resourceVersion: old.metadata?.resourceVersion },
            },
          });
        });
    }
  } catch (error) {
    throw apiError(error, namespace);
  }
  return {
    name,
    kind: namespace === undefined ? "ClusterRoleBinding" : "RoleBinding",
    ...(namespace === undefined ? {} : { namespace }),
    role,
    subjects: [`User:${user}`],
    expiresAt,
    remainingMs: request.forMs,
  };
}

/** The API server's refusal as one line that says what to do. */
function apiError(error: unknown, namespace?: string): Error {
  const status = statusOf(error);
  if (status === 404 && namespace !== undefined) {
    return new AccessError(
      `--shard: namespace ${namespace} does not exist; create the shard first (pulumi up on its stack)`,
    );
  }
  if (status === 401)
    return new AccessError("the API server does not accept these credentials; check --kubeconfig");
  if (status === 403) {
    return new AccessError(
      "the API server refused: your kubeconfig's user may not manage RBAC bindings here (needs platform admin)",
    );
  }
  if (status !== undefined) return new Error(`API server answered ${status}`, { cause: error });
  return new Error(`cannot reach the API server: ${(error as Error).message}`, { cause: error });
}

function grantOf(
  kind: Grant["kind"],
  binding: k8s.V1RoleBinding | k8s.V1ClusterRoleBinding,
  now: number,
): Grant {
  const expiresAt = binding.metadata?.annotations?.[EXPIRES_AT_ANNOTATION] ?? "";
  const at = parseRfc3339(expiresAt);
  return {
    name: binding.metadata?.name ?? "",
    kind,
    ...(binding.metadata?.namespace === undefined ? {} : { namespace: binding.metadata.namespace }),
    role: binding.roleRef.name,
    subjects: (binding.subjects ?? []).map((s) => `${s.kind}:${s.name}`),
    expiresAt,
    ...(at === undefined ? {} : { remainingMs: at.getTime() - now }),
  };
}

/** Every JIT binding (labelled `shardworks.dev/jit=true`), cluster-wide ones first. */
export async function listGrants(config: k8s.KubeConfig, now = Date.now()): Promise<Grant[]> {
  const rbac = config.makeApiClient(k8s.RbacAuthorizationV1Api);
  const labelSelector = `${JIT_LABEL}=true`;
  try {
    const [cluster, namespaced] = await Promise.all([
      rbac.listClusterRoleBinding({ labelSelector }),
      rbac.listRoleBindingForAllNamespaces({ labelSelector }),
    ]);
    return [
      ...cluster.items.map((b) => grantOf("ClusterRoleBinding", b, now)),
      ...namespaced.items.map((b) => grantOf("RoleBinding", b, now)),
    ];
  } catch (error) {
    throw apiError(error);
  }
}

/**
 * Delete the JIT grant called `name` (in `shard-<shard>` when given). Only JIT-labelled bindings
 * can be revoked this way; a name found in several places needs `--shard`.
 */
export async function revokeGrant(
  config: k8s.KubeConfig,
  name: string,
  shard?: string,
): Promise<Grant> {
  const namespace =
    shard === undefined ? undefined : `shard-${parseFlag(GrantShard, shard, "--shard")}`;
  const matches = (await listGrants(config)).filter(
    (g) => g.name === name && (namespace === undefined || g.namespace === namespace),
  );
  const [grant] = matches;
  if (grant === undefined) {
    throw new AccessError(
      `no JIT grant named ${name}${namespace ? ` in ${namespace}` : ""}; see shardworks access ls`,
    );
  }
  if (matches.length > 1) {
    const places = matches.map((g) => g.namespace ?? "cluster-wide").join(", ");
    throw new AccessError(`${name} exists in ${places}; say which with --shard`);
  }
  const rbac = config.makeApiClient(k8s.RbacAuthorizationV1Api);
  try {
    if (grant.namespace === undefined) await rbac.deleteClusterRoleBinding({ name });
    else await rbac.deleteNamespacedRoleBinding({ name, namespace: grant.namespace });
  } catch (error) {
    if (statusOf(error) !== 404) throw apiError(error);
  }
  return grant;
}

/** "1h29m left", "expired 3s ago", "malformed expiry". */
export function timeLeft(grant: Grant): string {
  if (grant.remainingMs === undefined) return "malformed expiry";
  return grant.remainingMs > 0
    ? `${formatDuration(grant.remainingMs)} left`
    : `expired ${formatDuration(-grant.remainingMs)} ago`;
}
