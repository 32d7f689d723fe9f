/**
 * Who may do what: the three Shardworks ClusterRoles, and `JitGrant`, a time-boxed binding that
 * the access reaper (in the routing controller) deletes once `shardworks.dev/expires-at` passes,
 * since Kubernetes RBAC has no expiry of its own.
 */
import * as aws from "@pulumi/aws";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { dnsLabel } from "../contract/model";
import {
  checkJitExpiry,
  checkJitMaxDuration,
  CLUSTER_ROLE_RULES,
  ClusterRoleName,
  DEFAULT_MAX_JIT_MS,
  EXPIRES_AT_ANNOTATION,
  JIT_LABEL,
} from "../contract";
import { appLabels } from "./common";
import { JitExpiry } from "./jit-expiry";

export { ClusterRoleName, DEFAULT_MAX_JIT_MS, MAX_JIT_CEILING_MS } from "../contract";

/** A Kubernetes RBAC subject. */
export interface Subject {
  /** `User` or `Group` (as the authenticator names them). */
  kind: "User" | "Group";
  name: string;
}

/**
 * True when every field of an RFC 3339 time is in range. Needed because V8's `Date` rolls
 * impossible dates over (`2026-02-30` becomes March 2) instead of rejecting them.
 */
/** Check a JIT ceiling: a finite number of milliseconds in `(0, MAX_JIT_CEILING_MS]`. */
export function validateJitMaxDuration(maxMs: number): void {
  const reason = checkJitMaxDuration(maxMs);
  if (reason !== undefined)
    throw new pulumi.InputPropertyError({ propertyPath: "maxDurationMs", reason });
}

/**
 * Check a JIT grant's expiry: RFC 3339, in the future (unless `pastAllowed`), at most `maxMs`
 * ahead of `now`. Returns the expiry as a Date.
 */
export function validateJitExpiry(
  expiresAt: string,
  now: Date,
  maxMs: number,
  options: { pastAllowed?: boolean } = {},
): Date {
  const checked = checkJitExpiry(expiresAt, now, maxMs, options);
  if ("reason" in checked) {
    throw new pulumi.InputPropertyError({ propertyPath: checked.field, reason: checked.reason });
  }
  return checked.at;
}

/** Check that a subject has a kind and a name. */
export function validateSubject(subject: Subject | undefined, propertyPath: string): void {
  if (typeof subject !== "object" || subject === null) {
    throw new pulumi.InputPropertyError({
      propertyPath,
      reason: 'is required: { kind: "User" | "Group", name }',
    });
  }
  if (subject.kind !== "User" && subject.kind !== "Group") {
    throw new pulumi.InputPropertyError({
      propertyPath: `${propertyPath}.kind`,
      reason: `${JSON.stringify(subject.kind)} is not allowed; use "User" or "Group"`,
    });
  }
  if (typeof subject.name !== "string" || subject.name.trim() === "") {
    throw new pulumi.InputPropertyError({
      propertyPath: `${propertyPath}.name`,
      reason: "must not be empty",
    });
  }
}

/** Check a JIT grant's role (one of the three Shardworks ClusterRoles) and namespace. */
export function validateJitTarget(clusterRole: string, namespace: string | undefined): void {
  const roles = Object.values(ClusterRoleName) as string[];
  if (!roles.includes(clusterRole)) {
    throw new pulumi.InputPropertyError({
      propertyPath: "clusterRole",
      reason: `${JSON.stringify(clusterRole)} is not allowed; use one of ${roles.map((r) => JSON.stringify(r)).join(", ")}`,
    });
  }
  if (namespace !== undefined && !dnsLabel.safeParse(namespace).success) {
    throw new pulumi.InputPropertyError({
      propertyPath: "namespace",
      reason: `${JSON.stringify(namespace)} is not a namespace name (a DNS label: lowercase letters, digits, '-', at most 63)`,
    });
  }
}

function rbacSubject(subject: Subject): k8s.types.input.rbac.v1.Subject {
  return { kind: subject.kind, name: subject.name, apiGroup: "rbac.authorization.k8s.io" };
}

/** Arguments of {@link AccessControl}. */
export interface AccessControlArgs {
  /** Subjects bound cluster-wide to `shardworks:platform-admin`. Default: none. */
  platformAdmins?: Subject[];
}

/** What {@link createAccessControl} made. */
export interface AccessControlResult {
  clusterRoles: Record<ClusterRoleName, k8s.rbac.v1.ClusterRole>;
  adminBinding?: k8s.rbac.v1.ClusterRoleBinding;
}

/** Build the ClusterRoles (and the admins' binding) as children of `parent`. */
export function createAccessControl(
  name: string,
  args: AccessControlArgs,
  parent: pulumi.Resource,
): AccessControlResult {
  const labels = appLabels(name, "access-control");
  const role = (
    role: string,
    roleName: ClusterRoleName,
    rules: k8s.types.input.rbac.v1.PolicyRule[],
  ) =>
    new k8s.rbac.v1.ClusterRole(
      `${name}-${role}`,
      { metadata: { name: roleName, labels }, rules },
      { parent },
    );
  const clusterRoles = {
    [ClusterRoleName.PlatformAdmin]: role(
      "platform-admin",
      ClusterRoleName.PlatformAdmin,
      CLUSTER_ROLE_RULES[ClusterRoleName.PlatformAdmin],
    ),
    [ClusterRoleName.ShardOwner]: role(
      "shard-owner",
      ClusterRoleName.ShardOwner,
      CLUSTER_ROLE_RULES[ClusterRoleName.ShardOwner],
    ),
    [ClusterRoleName.ShardViewer]: role(
      "shard-viewer",
      ClusterRoleName.ShardViewer,
      CLUSTER_ROLE_RULES[ClusterRoleName.ShardViewer],
    ),
  };
  const admins = args.platformAdmins ?? [];
  const adminBinding =
    admins.length === 0
      ? undefined
      : new k8s.rbac.v1.ClusterRoleBinding(
          `${name}-platform-admins`,
          {
            metadata: { name: "shardworks:platform-admins", labels },
            roleRef: {
              apiGroup: "rbac.authorization.k8s.io",
              kind: "ClusterRole",
              name: ClusterRoleName.PlatformAdmin,
            },
            subjects: admins.map(rbacSubject),
          },
          { parent, dependsOn: [clusterRoles[ClusterRoleName.PlatformAdmin]] },
        );
  return { clusterRoles, adminBinding };
}

/** The Shardworks ClusterRoles, and a binding of the platform admins. */
export class AccessControl extends pulumi.ComponentResource {
  /** Names of the ClusterRoles created. */
  readonly clusterRoleNames: pulumi.Output<string[]>;

  constructor(name: string, args: AccessControlArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardworks:components:AccessControl", name, {}, opts);
    (args.platformAdmins ?? []).forEach((s, i) => validateSubject(s, `platformAdmins[${i}]`));
    const result = createAccessControl(name, args, this);
    this.clusterRoleNames = pulumi.output(Object.keys(result.clusterRoles));
    this.registerOutputs({ clusterRoleNames: this.clusterRoleNames });
  }
}

/** Arguments of {@link JitGrant}. */
export interface JitGrantArgs {
  /** Who gets the access. */
  subject: Subject;
  /** One of the three Shardworks ClusterRoles ({@link ClusterRoleName}), e.g. `shardworks:shard-owner`. */
  clusterRole: ClusterRoleName;
  /** Namespace to grant it in (a RoleBinding); absent = cluster-wide (a ClusterRoleBinding). */
  namespace?: string;
  /** When the grant ends, RFC 3339. Must be in the future and at most `maxDurationMs` ahead. */
  expiresAt: string;
  /** Longest allowed grant, in milliseconds. Default 8 hours (the platform's `maxJitDuration`). */
  maxDurationMs?: number;
  /** Clock for the checks. Default: now. */
  now?: Date;
  /**
   * AWS only: also create an IAM role this principal (ARN) may assume, with a 1-hour
   * `maxSessionDuration`. Absent = no IAM role (target local).
   */
  awsPrincipalArn?: pulumi.Input<string>;
}

/** What {@link createJitGrant} made. */
export interface JitGrantResult {
  binding: k8s.rbac.v1.RoleBinding | k8s.rbac.v1.ClusterRoleBinding;
  iamRole?: aws.iam.Role;
}

/** IAM's smallest allowed `maxSessionDuration`, seconds. */
export const JIT_IAM_MAX_SESSION_SECONDS = 3600;

/** Build a time-boxed binding (and IAM role) as children of `parent`. */
export function createJitGrant(
  name: string,
  args: JitGrantArgs,
  expiresAt: Date,
  parent: pulumi.Resource,
  expiryRecord?: pulumi.Resource,
): JitGrantResult {
  // Nothing is bound until the expiry record accepted the expiry.
  const dependsOn = expiryRecord ? [expiryRecord] : [];
  const metadata = {
    labels: { ...appLabels(name, "jit-grant"), [JIT_LABEL]: "true" },
    annotations: { [EXPIRES_AT_ANNOTATION]: expiresAt.toISOString() },
  };
  const roleRef = {
    apiGroup: "rbac.authorization.k8s.io",
    kind: "ClusterRole",
    name: args.clusterRole,
  };
  const subjects = [rbacSubject(args.subject)];
  const binding =
    args.namespace === undefined
      ? new k8s.rbac.v1.ClusterRoleBinding(
          `${name}-binding`,
          { metadata, roleRef, subjects },
          { parent, dependsOn },
        )
      : new k8s.rbac.v1.RoleBinding(
          `${name}-binding`,
          { metadata: { ...metadata, namespace: args.namespace }, roleRef, subjects },
          { parent, dependsOn },
        );
  const iamRole =
    args.awsPrincipalArn === undefined
      ? undefined
      : new aws.iam.Role(
          `${name}-iam-role`,
          {
            maxSessionDuration: JIT_IAM_MAX_SESSION_SECONDS,
            assumeRolePolicy: pulumi.jsonStringify({
              Version: "2012-10-17",
              Statement: [
                {
                  Effect: "Allow",
                  Action: "sts:AssumeRole",
                  Principal: { AWS: args.awsPrincipalArn },
                  // IAM checks the expiry too, so the role is useless after it even before
                  // the reaper deletes it.
                  Condition: { DateLessThan: { "aws:CurrentTime": expiresAt.toISOString() } },
                },
              ],
            }),
            tags: { "shardworks.dev/expires-at": expiresAt.toISOString() },
          },
          { parent, dependsOn },
        );
  return { binding, iamRole };
}

/**
 * A just-in-time grant of a ClusterRole to a subject, in one namespace or cluster-wide, that
 * expires: annotated `shardworks.dev/expires-at` for the access reaper.
 */
export class JitGrant extends pulumi.ComponentResource {
  /** RFC 3339 expiry. */
  readonly expiresAt: pulumi.Output<string>;
  /** ARN of the IAM role (AWS only). */
  readonly iamRoleArn: pulumi.Output<string | undefined>;

  constructor(name: string, args: JitGrantArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardworks:components:JitGrant", name, {}, opts);
    validateSubject(args.subject, "subject");
    validateJitTarget(args.clusterRole, args.namespace);
    // "In the past" is left to JitExpiry, which checks it only when the expiry is set or
    // changed: an expired grant still in the program must not fail every later `pulumi up`.
    const expiresAt = validateJitExpiry(
      args.expiresAt,
      args.now ?? new Date(),
      args.maxDurationMs ?? DEFAULT_MAX_JIT_MS,
      { pastAllowed: true },
    );
    const recorded = new JitExpiry(
      `${name}-expiry`,
      { expiresAt: expiresAt.toISOString() },
      { parent: this },
    );
    const result = createJitGrant(name, args, expiresAt, this, recorded);
    this.expiresAt = pulumi.output(expiresAt.toISOString());
    this.iamRoleArn = result.iamRole ? result.iamRole.arn : pulumi.output(undefined);
    this.registerOutputs({ expiresAt: this.expiresAt, iamRoleArn: this.iamRoleArn });
  }
}
