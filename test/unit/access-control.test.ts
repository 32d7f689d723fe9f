/* eslint-disable @typescript-eslint/no-unsafe-return, @typescript-eslint/no-unsafe-argument --
   Recorded resource inputs are untyped JSON; tests read into them freely. */
import test from "ava";
import {
  AccessControl,
  ClusterRoleName,
  EXPIRES_AT_ANNOTATION,
  JitGrant,
  jitExpiryProvider,
  validateJitExpiry,
  validateJitTarget,
  validateSubject,
  type Subject,
} from "../../components";
import { installMocks, named, ofType, settled, unwrap } from "./helpers/pulumi";
import { reasonOf, testObjectsMatchOpenApi, throwsBeforeAnyChild } from "./helpers/component-tests";

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

testObjectsMatchOpenApi({ atLeast: 6 });

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
  [
    "subject name missing",
    () => validateSubject({ kind: "User" } as Subject, "subject"),
    "subject.name: must not be empty",
  ],
  [
    "subject missing",
    () => validateSubject(undefined, "subject"),
    'subject: is required: { kind: "User" | "Group", name }',
  ],
  [
    "February 30th (V8 would roll it over to March 2nd)",
    () => validateJitExpiry("2026-02-30T10:00:00Z", now, 8 * HOUR),
    'expiresAt: "2026-02-30T10:00:00Z" is not an RFC 3339 time, e.g. "2026-11-22T17:00:00Z"',
  ],
  [
    "hour 24",
    () => validateJitExpiry("2026-11-22T24:00:00Z", now, 8 * HOUR),
    'expiresAt: "2026-11-22T24:00:00Z" is not an RFC 3339 time, e.g. "2026-11-22T17:00:00Z"',
  ],
  [
    "infinite maximum",
    () => validateJitExpiry("2099-01-01T00:00:00Z", now, Infinity),
    "maxDurationMs: Infinity must be a number of milliseconds above 0 and at most 86400000 (24h)",
  ],
  [
    "NaN maximum",
    () => validateJitExpiry("2026-11-22T10:10:00Z", now, NaN),
    "maxDurationMs: NaN must be a number of milliseconds above 0 and at most 86400000 (24h)",
  ],
  [
    "negative maximum",
    () => validateJitExpiry("2026-11-22T10:10:00Z", now, -5),
    "maxDurationMs: -5 must be a number of milliseconds above 0 and at most 86400000 (24h)",
  ],
  [
    "maximum above the 24h ceiling",
    () => validateJitExpiry("2026-11-22T10:10:00Z", now, 25 * HOUR),
    "maxDurationMs: 90000000 must be a number of milliseconds above 0 and at most 86400000 (24h)",
  ],
  [
    "cluster-admin is not a Shardworks role",
    () => validateJitTarget("cluster-admin", undefined),
    'clusterRole: "cluster-admin" is not allowed; use one of "shardworks:platform-admin", "shardworks:shard-owner", "shardworks:shard-viewer"',
  ],
  [
    "namespace not a DNS label",
    () => validateJitTarget(ClusterRoleName.ShardViewer, "Not A Namespace"),
    "namespace: \"Not A Namespace\" is not a namespace name (a DNS label: lowercase letters, digits, '-', at most 63)",
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
  // RFC 3339 allows lowercase "t" and "z".
  t.is(
    validateJitExpiry("2026-11-22t11:00:00z", now, 8 * HOUR).toISOString(),
    "2026-11-22T11:00:00.000Z",
  );
  t.is(
    validateJitExpiry(
      "2028-02-29T05:00:00Z",
      new Date("2028-02-29T00:00:00Z"),
      8 * HOUR,
    ).getUTCDate(),
    29,
  );
});

test("a JitGrant of cluster-admin fails in its constructor, creating nothing", (t) => {
  const error = throwsBeforeAnyChild(
    t,
    "jit-admin",
    () =>
      new JitGrant("jit-admin", {
        subject: { kind: "User", name: "mallory" },
        clusterRole: "cluster-admin" as ClusterRoleName,
        expiresAt: "2026-11-22T11:00:00Z",
        now,
      }),
  );
  t.regex(error?.message ?? "", /^"cluster-admin" is not allowed/);
});

test("a JitGrant too far ahead fails in its constructor, creating nothing", (t) => {
  const error = throwsBeforeAnyChild(
    t,
    "jit-long",
    () =>
      new JitGrant("jit-long", {
        subject: { kind: "User", name: "dave" },
        clusterRole: ClusterRoleName.ShardOwner,
        namespace: "shard-dave",
        expiresAt: "2026-11-23T10:00:00Z",
        now,
      }),
  );
  t.is(error?.message, "2026-11-23T10:00:00Z is more than 8h ahead; the maximum JIT grant is 8h");
});

test("the expiry is recorded in the state, and the grant's objects wait for it", async (t) => {
  const record = named("jit-carol-expiry");
  t.is(record.parent, "jit-carol");
  t.is(record.inputs["expiresAt"], "2026-11-22T12:00:00.000Z");
  // The provider Pulumi stores in the state, so the engine can run its check() on later runs.
  const provider: unknown = await unwrap(record.inputs["__provider"]);
  t.true(typeof provider === "string" && provider.includes("expiresAt"));
});

test("'in the past' is checked only when the expiry is set or changed", async (t) => {
  const past = "2020-01-01T00:00:00Z";
  const future = new Date(Date.now() + HOUR).toISOString();
  const check = (olds: Record<string, string>, expiresAt: string) =>
    jitExpiryProvider.check!(olds as never, { expiresAt });
  // A new grant that has already expired is refused.
  const created = await check({}, past);
  t.is(created.failures?.[0]?.property, "expiresAt");
  t.regex(created.failures?.[0]?.reason ?? "", /^2020-01-01T00:00:00Z is in the past \(now is /);
  // A later `pulumi up` of a stack whose grant has since expired (expiry unchanged) goes through.
  t.is((await check({ expiresAt: past }, past)).failures, undefined);
  // Changing the expiry to another past time is refused; to a future one, accepted.
  t.is((await check({ expiresAt: "2019-01-01T00:00:00Z" }, past)).failures?.length, 1);
  t.is((await check({ expiresAt: past }, future)).failures, undefined);
});

test("a JitGrant whose expiry has passed can still be constructed (a later up of its stack)", (t) => {
  t.notThrows(
    () =>
      new JitGrant("jit-expired", {
        subject: { kind: "User", name: "erin" },
        clusterRole: ClusterRoleName.ShardViewer,
        namespace: "shard-erin",
        expiresAt: "2026-11-22T09:00:00Z",
        now,
      }),
  );
});
