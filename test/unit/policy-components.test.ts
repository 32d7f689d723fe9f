// Our own components, run under the recording Pulumi mock (AWS/EKS cannot be reached from here),
// fed to the policy pack: they must pass every mandatory rule. The real engine's run of the pack
// is in test/e2e (see docs/readme/policy.md).
import test from "ava";
import {
  AccessControl,
  ClusterRoleName,
  DevShard,
  EnvoyGateway,
  JitGrant,
  MetalCluster,
  RuntimeDeployment,
} from "../../components";
import { createJitExpiryPolicy, createShardTtlPolicy, policies } from "../../policy/rules";
import { installMocks, recorded, settled } from "./helpers/pulumi";
import { aliceShard } from "./helpers/shards";
import { runPolicy, type TestResource, type Violation } from "./helpers/policy";

const now = new Date("2026-11-22T10:00:00.000Z");
// The JIT and TTL rules with the clock the components were built with; the rest as shipped.
const pack = policies.map((p) =>
  p.name === "jit-binding-expiry"
    ? createJitExpiryPolicy(() => now)
    : p.name === "shard-ttl-at-most-7-days"
      ? createShardTtlPolicy(() => now)
      : p,
);

function runPack(resources: TestResource[]): Violation[] {
  return pack.flatMap((policy) => runPolicy(policy, resources));
}

test.before(async () => {
  await installMocks({
    state: {
      "eks:index:Cluster": () => ({ kubeconfigJson: "{}" }),
      "aws:ec2/launchTemplate:LaunchTemplate": () => ({ latestVersion: 1 }),
      "aws:iam/role:Role": (_inputs, name) => ({
        arn: `arn:aws:iam::123456789012:role/${name}`,
        name,
      }),
    },
  });
  const cluster = new MetalCluster("dev", {
    clusterName: "shardworks-dev",
    kubernetesVersion: "1.33",
    availabilityZones: ["us-east-1a", "us-east-1b"],
    nodeGroups: [
      { name: "system", role: "system", instanceType: "m6i.large", minSize: 2, maxSize: 4 },
      { name: "metal", role: "microvm", instanceType: "c6i.metal", minSize: 1, maxSize: 3 },
    ],
  });
  const runtime = new RuntimeDeployment("rt", {
    version: "0.1.0",
    imageRepository: "ghcr.io/shardworks/runtime",
    platformToken: "t".repeat(40),
    gatewayNamespace: "shardworks-gateway",
    schedulerReplicas: 2,
    skipAwait: true,
  });
  const gateway = new EnvoyGateway("gw", { adsHost: "shardworks-routing", adsPort: 18000 });
  const access = new AccessControl("access", {
    platformAdmins: [{ kind: "Group", name: "admins" }],
  });
  const grant = new JitGrant("jit-carol", {
    subject: { kind: "User", name: "carol" },
    clusterRole: ClusterRoleName.ShardViewer,
    namespace: "shard-alice",
    expiresAt: "2026-11-22T18:00:00Z",
    now,
    awsPrincipalArn: "arn:aws:iam::123456789012:role/carol",
  });
  const shard = new DevShard("shard-alice", aliceShard({ ttlSeconds: 7 * 86_400, now }));
  await settled(
    cluster.nodeGroupNames,
    runtime.namespace,
    gateway.address,
    access.clusterRoleNames,
    grant.expiresAt,
    shard.namespace,
    shard.forkDestinations,
  );
});

const emitted = (): TestResource[] =>
  recorded.map(({ type, name, inputs }) => ({ type, name, inputs }));
const count = (type: string) => recorded.filter((r) => r.type === type).length;

test("the components emit what the rules look at", (t) => {
  // Guards against a vacuous pass: each rule has something of ours to check.
  t.is(count("kubernetes:core/v1:Namespace"), 3, "system, gateway and shard namespaces");
  t.is(count("kubernetes:core/v1:ResourceQuota"), 1);
  t.is(count("kubernetes:apps/v1:DaemonSet"), 1, "the privileged node agent");
  t.is(count("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding") >= 1, true);
  t.is(count("eks:index:ManagedNodeGroup"), 2);
  t.is(count("kubernetes:core/v1:ConfigMap") >= 1, true, "the Envoy bootstrap");
});

test("our components pass every mandatory rule", (t) => {
  const mandatory = runPack(emitted()).filter((v) => v.enforcementLevel === "mandatory");
  t.deepEqual(mandatory, []);
});

test("the only advisories are platform images by tag (no digest yet)", (t) => {
  const advisories = runPack(emitted()).filter((v) => v.enforcementLevel === "advisory");
  t.true(advisories.length > 0);
  for (const v of advisories) {
    t.is(v.policy, "platform-images-pinned");
    t.regex(v.message, /is not pinned by digest; use <image>@sha256:<digest>$/);
  }
  // The developer's fork image is not a platform image.
  t.false(advisories.some((v) => v.message.includes("ghcr.io/acme/checkout")));
});

test("the same stack with the shard's default-deny policy removed is refused", (t) => {
  const withoutDeny = emitted().filter((r) => r.name !== "shard-alice-default-deny");
  t.deepEqual(
    runPack(withoutDeny).map((v) => [v.policy, v.message]),
    [
      [
        "shard-namespace-fences",
        'shard namespace "shard-alice" has no default-deny NetworkPolicy (podSelector {}, policyTypes [Ingress], no ingress rules); add one so only what is allowed can reach the shard',
      ],
    ].concat(
      runPack(emitted())
        .filter((v) => v.enforcementLevel === "advisory")
        .map((v) => [v.policy, v.message]),
    ),
  );
});
