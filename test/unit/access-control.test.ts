/* eslint-disable @typescript-eslint/no-unsafe-return, @typescript-eslint/no-unsafe-argument --
   Recorded resource inputs are untyped JSON; tests read into them freely. */
import test from "ava";
import * as pulumi from "@pulumi/pulumi";
import {
  AccessControl,
  ClusterRoleName,
  EXPIRES_AT_ANNOTATION,
  JitGrant,
  validateJitExpiry,
  validateSubject,
} from "../../components";
import { isKubernetesObject, kubernetesSchemaProblems } from "./helpers/k8s-schema";
import { installMocks, named, ofType, recorded, settled, unwrap } from "./helpers/pulumi";

const now = new Date("2026-11-22T10:00:00.000Z");
const HOUR = 3_600_000;
let nsGrant: JitGrant;
let awsGrant: JitGrant;

test.before(async () => {
  await installMocks();
  const access = new AccessControl("access", {
    platformAdmins: [{ kind: "Group", name: "admins" }],
  });
  nsGrant = new JitGrant("jit-carol", {
    subject: { kind: "User", name: "carol" },
    clusterRole: ClusterRoleName.ShardViewer,
    namespace: "shard-alice",
    expiresAt: "2026-11-22T12:00:00Z",
    now,
  });
  awsGrant = new JitGrant("jit-oncall", {
    subject: { kind: "Group", name: "oncall" },
    clusterRole: ClusterRoleName.PlatformAdmin,
    expiresAt: "2026-11-22T11:00:00Z",
    now,
    awsPrincipalArn: "arn:aws:iam::123456789012:role/oncall",
  });
  await settled(access.clusterRoleNames, nsGrant.expiresAt, awsGrant.iamRoleArn);
});

test("the three ClusterRoles, named as the design says, children of AccessControl", (t) => {
  const roles = ofType("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole", "access");
  t.deepEqual(roles.map((r) => [r.name, r.inputs["metadata"].name]).sort(), [
    ["access-platform-admin", "shardworks:platform-admin"],
    ["access-shard-owner", "shardworks:shard-owner"],
    ["access-shard-viewer", "shardworks:shard-viewer"],
  ]);
  const admins = named("access-platform-admins").inputs;
  t.is(admins["roleRef"].name, "shardworks:platform-admin");
  t.deepEqual(admins["subjects"], [
    { kind: "Group", name: "admins", apiGroup: "rbac.authorization.k8s.io" },
  ]);
});

test("shard owners cannot touch RBAC; viewers cannot read secrets", (t) => {
  const rules = (name: string) =>
    named(name).inputs["rules"] as { apiGroups: string[]; resources: string[] }[];
  for (const rule of rules("access-shard-owner")) {
    t.false(rule.apiGroups.includes("rbac.authorization.k8s.io"));
    t.false(rule.apiGroups.includes("*"));
  }
  for (const rule of rules("access-shard-viewer")) t.false(rule.resources.includes("secrets"));
});

test("a namespaced JIT grant is a RoleBinding annotated with its expiry", async (t) => {
  const binding = named("jit-carol-binding");
  t.is(binding.type, "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding");
  t.is(binding.parent, "jit-carol");
  t.is(binding.inputs["metadata"].namespace, "shard-alice");
  t.is(binding.inputs["metadata"].annotations[EXPIRES_AT_ANNOTATION], "2026-11-22T12:00:00.000Z");
  t.is(binding.inputs["roleRef"].name, "shardworks:shard-viewer");
  t.deepEqual(binding.inputs["subjects"], [
    { kind: "User", name: "carol", apiGroup: "rbac.authorization.k8s.io" },
  ]);
  t.is(await unwrap(nsGrant.expiresAt), "2026-11-22T12:00:00.000Z");
  t.is(ofType("aws:iam/role:Role", "jit-carol").length, 0, "no IAM role without a principal");
});

test("a cluster-wide JIT grant is a ClusterRoleBinding, plus an IAM role with a short session", (t) => {
  const binding = named("jit-oncall-binding");
  t.is(binding.type, "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding");
  t.is(binding.inputs["metadata"].annotations[EXPIRES_AT_ANNOTATION], "2026-11-22T11:00:00.000Z");
  const role = named("jit-oncall-iam-role");
  t.is(role.type, "aws:iam/role:Role");
  t.is(role.parent, "jit-oncall");
  t.is(role.inputs["maxSessionDuration"], 3600);
  const policy = JSON.parse(role.inputs["assumeRolePolicy"]);
  t.deepEqual(policy.Statement[0].Principal, { AWS: "arn:aws:iam::123456789012:role/oncall" });
  t.deepEqual(policy.Statement[0].Condition, {
    DateLessThan: { "aws:CurrentTime": "2026-11-22T11:00:00.000Z" },
  });
});

test("every Kubernetes object is valid against the OpenAPI schema", (t) => {
  const objects = recorded.filter((r) => isKubernetesObject(r.type));
  t.is(objects.length, 6);
  for (const r of objects) t.deepEqual(kubernetesSchemaProblems(r.inputs), [], r.name);
});

const reasonOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return `${(error as pulumi.InputPropertyError).propertyPath}: ${(error as Error).message}`;
  }
  return "no error";
};
const bad: [string, () => unknown, string][] = [
  [
    "expiry in the past",
    () => validateJitExpiry("2026-11-22T09:59:59Z", now, 8 * HOUR),
    "expiresAt: 2026-11-22T09:59:59Z is in the past (now is 2026-11-22T10:00:00.000Z)",
  ],
  [
    "expiry now",
    () => validateJitExpiry("2026-11-22T10:00:00Z", now, 8 * HOUR),
    "expiresAt: 2026-11-22T10:00:00Z is in the past (now is 2026-11-22T10:00:00.000Z)",
  ],
  [
    "expiry past the default 8h",
    () => validateJitExpiry("2026-11-22T18:00:01Z", now, 8 * HOUR),
    "expiresAt: 2026-11-22T18:00:01Z is more than 8h ahead; the maximum JIT grant is 8h",
  ],
  [
    "expiry past a configured 2h",
    () => validateJitExpiry("2026-11-22T12:30:00Z", now, 2 * HOUR),
    "expiresAt: 2026-11-22T12:30:00Z is more than 2h ahead; the maximum JIT grant is 2h",
  ],
  [
    "not RFC 3339",
    () => validateJitExpiry("tomorrow", now, 8 * HOUR),
    'expiresAt: "tomorrow" is not an RFC 3339 time, e.g. "2026-11-22T17:00:00Z"',
  ],
  [
    "date without time",
    () => validateJitExpiry("2026-11-22", now, 8 * HOUR),
    'expiresAt: "2026-11-22" is not an RFC 3339 time, e.g. "2026-11-22T17:00:00Z"',
  ],
  [
    "subject kind",
    () => validateSubject({ kind: "Robot" as "User", name: "r2" }, "subject"),
    'subject.kind: "Robot" is not allowed; use "User" or "Group"',
  ],
  [
    "subject name",
    () => validateSubject({ kind: "User", name: " " }, "subject"),
    "subject.name: must not be empty",
  ],
];
for (const [title, fn, expected] of bad) {
  test(`validator rejects: ${title}`, (t) => t.is(reasonOf(fn), expected));
}

test("validators accept an expiry within the window, with an offset", (t) => {
  t.is(
    validateJitExpiry("2026-11-22T18:00:00Z", now, 8 * HOUR).toISOString(),
    "2026-11-22T18:00:00.000Z",
  );
  t.is(
    validateJitExpiry("2026-11-22T14:00:00+02:00", now, 8 * HOUR).toISOString(),
    "2026-11-22T12:00:00.000Z",
  );
});

test("a JitGrant too far ahead fails in its constructor, creating nothing", (t) => {
  const before = recorded.length;
  const error = t.throws(
    () =>
      new JitGrant("jit-long", {
        subject: { kind: "User", name: "dave" },
        clusterRole: ClusterRoleName.ShardOwner,
        namespace: "shard-dave",
        expiresAt: "2026-11-23T10:00:00Z",
        now,
      }),
    { instanceOf: pulumi.InputPropertyError },
  );
  t.is(error?.message, "2026-11-23T10:00:00Z is more than 8h ahead; the maximum JIT grant is 8h");
  t.false(recorded.slice(before).some((r) => r.name.startsWith("jit-long-")));
});
