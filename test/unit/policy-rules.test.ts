// Each rule of the policy pack, called directly with resources shaped the way the policy SDK
// passes them (type token + inputs), passing and failing, with the exact messages.
import test from "ava";
import {
  createJitExpiryPolicy,
  createShardTtlPolicy,
  envoyAdminNotExposed,
  microvmNodeGroupsOnMetal,
  noPrivilegedWorkloads,
  platformImagesPinned,
  policies,
  shardNamespaceFences,
} from "../../policy/rules";
import { messagesFor, runPolicy, type TestResource } from "./helpers/policy";

const NS = "kubernetes:core/v1:Namespace";
const QUOTA = "kubernetes:core/v1:ResourceQuota";
const NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy";
const DEPLOYMENT = "kubernetes:apps/v1:Deployment";
const DAEMONSET = "kubernetes:apps/v1:DaemonSet";
const POD = "kubernetes:core/v1:Pod";
const CRONJOB = "kubernetes:batch/v1:CronJob";
const CONFIGMAP = "kubernetes:core/v1:ConfigMap";
const SERVICE = "kubernetes:core/v1:Service";
const ROLEBINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding";
const CLUSTERROLEBINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding";
const now = new Date("2026-11-22T10:00:00.000Z");
const DIGEST = "sha256:" + "a".repeat(64);

function deployment(
  name: string,
  namespace: string | undefined,
  podSpec: Record<string, unknown>,
  labels: Record<string, string> = {},
): TestResource {
  return {
    type: DEPLOYMENT,
    name,
    inputs: {
      metadata: { name, namespace, labels },
      spec: { selector: { matchLabels: { app: name } }, template: { spec: podSpec } },
    },
  };
}

// --- shard-namespace-fences -------------------------------------------------------------

const shardNs = (name: string): TestResource => ({
  type: NS,
  name,
  inputs: { metadata: { name } },
});
const quota = (namespace: string): TestResource => ({
  type: QUOTA,
  name: `${namespace}-quota`,
  inputs: { metadata: { namespace }, spec: { hard: { pods: "5" } } },
});
const denyAll = (namespace: string, spec: Record<string, unknown> = {}): TestResource => ({
  type: NETPOL,
  name: `${namespace}-deny`,
  inputs: { metadata: { namespace }, spec: { podSelector: {}, policyTypes: ["Ingress"], ...spec } },
});

test("fences: a shard namespace with a quota and a default-deny policy passes", (t) => {
  t.deepEqual(
    messagesFor(shardNamespaceFences, shardNs("shard-a"), quota("shard-a"), denyAll("shard-a")),
    [],
  );
  // Namespaces that are not shards need neither.
  t.deepEqual(messagesFor(shardNamespaceFences, shardNs("shardworks-system")), []);
});

test("fences: missing quota and missing default-deny are each reported on the namespace", (t) => {
  const violations = runPolicy(shardNamespaceFences, [
    shardNs("shard-a"),
    quota("shard-b"), // another namespace's quota does not count
    denyAll("shard-a", { podSelector: { matchLabels: { app: "x" } } }), // not every pod
    denyAll("shard-a", { ingress: [{ from: [{ podSelector: {} }] }] }), // allows ingress
  ]);
  t.deepEqual(
    violations.map((v) => v.message),
    [
      'shard namespace "shard-a" has no ResourceQuota; add one so the shard cannot take the whole cluster',
      'shard namespace "shard-a" has no default-deny NetworkPolicy (podSelector {}, policyTypes [Ingress], no ingress rules); add one so only what is allowed can reach the shard',
    ],
  );
  t.true(violations.every((v) => v.urn === `urn:pulumi:test::shardworks::${NS}::shard-a`));
  t.is(violations[0]?.enforcementLevel, "mandatory");
});

test("fences: a namespace labelled with a shard counts as one whatever its name", (t) => {
  t.deepEqual(
    messagesFor(shardNamespaceFences, {
      type: NS,
      name: "x",
      inputs: { metadata: { name: "team-x", labels: { "shardworks.dev/shard": "x" } } },
    }),
    [
      'shard namespace "team-x" has no ResourceQuota; add one so the shard cannot take the whole cluster',
      'shard namespace "team-x" has no default-deny NetworkPolicy (podSelector {}, policyTypes [Ingress], no ingress rules); add one so only what is allowed can reach the shard',
    ],
  );
});

// --- no-privileged-workloads --------------------------------------------------------------

test("privileged: a restricted workload in a shard passes", (t) => {
  t.deepEqual(
    messagesFor(
      noPrivilegedWorkloads,
      deployment("api", "shard-a", {
        containers: [
          {
            name: "api",
            image: "api:1",
            securityContext: {
              privileged: false,
              allowPrivilegeEscalation: false,
              capabilities: { drop: ["ALL"] },
            },
          },
        ],
      }),
    ),
    [],
  );
});

test("privileged: every privileged setting outside shardworks-system is reported", (t) => {
  t.deepEqual(
    messagesFor(
      noPrivilegedWorkloads,
      deployment("api", "shard-a", {
        hostPID: true,
        hostNetwork: true,
        volumes: [{ name: "root", hostPath: { path: "/" } }],
        initContainers: [
          { name: "init", image: "i:1", securityContext: { capabilities: { add: ["NET_ADMIN"] } } },
        ],
        containers: [
          {
            name: "api",
            image: "api:1",
            securityContext: { privileged: true, allowPrivilegeEscalation: true },
          },
        ],
      }),
    ),
    [
      'spec.template.spec.hostPID is true in namespace "shard-a"; only pods in shardworks-system may share the node\'s namespaces',
      'spec.template.spec.hostNetwork is true in namespace "shard-a"; only pods in shardworks-system may share the node\'s namespaces',
      'spec.template.spec.volumes[0].hostPath.path is "/" in namespace "shard-a"; only pods in shardworks-system may mount host paths',
      'spec.template.spec.initContainers[0] ("init"): securityContext.capabilities.add is ["NET_ADMIN"] in namespace "shard-a"; only pods in shardworks-system may add capabilities',
      'spec.template.spec.containers[0] ("api"): securityContext.privileged is true in namespace "shard-a"; only pods in shardworks-system may run privileged',
      'spec.template.spec.containers[0] ("api"): securityContext.allowPrivilegeEscalation is true in namespace "shard-a"; set it to false',
    ],
  );
});

test("privileged: a bare Pod with no namespace is in default, and a CronJob is read too", (t) => {
  t.deepEqual(
    messagesFor(
      noPrivilegedWorkloads,
      {
        type: POD,
        name: "p",
        inputs: {
          metadata: {},
          spec: { containers: [{ name: "c", securityContext: { privileged: true } }] },
        },
      },
      {
        type: CRONJOB,
        name: "cj",
        inputs: {
          metadata: { namespace: "jobs" },
          spec: {
            schedule: "* * * * *",
            jobTemplate: { spec: { template: { spec: { hostIPC: true, containers: [] } } } },
          },
        },
      },
    ),
    [
      'spec.containers[0] ("c"): securityContext.privileged is true in namespace "default"; only pods in shardworks-system may run privileged',
      'spec.jobTemplate.spec.template.spec.hostIPC is true in namespace "jobs"; only pods in shardworks-system may share the node\'s namespaces',
    ],
  );
});

test("privileged: in shardworks-system the node agent's /dev/kvm is allowed, other host paths are not", (t) => {
  const agent = (paths: string[]): TestResource => ({
    type: DAEMONSET,
    name: "agent",
    inputs: {
      metadata: { namespace: "shardworks-system" },
      spec: {
        template: {
          spec: {
            containers: [{ name: "agent", securityContext: { privileged: true } }],
            volumes: paths.map((path, i) => ({ name: `v${i}`, hostPath: { path } })),
          },
        },
      },
    },
  });
  t.deepEqual(messagesFor(noPrivilegedWorkloads, agent(["/dev/kvm", "/var/lib/shardworks"])), []);
  t.deepEqual(messagesFor(noPrivilegedWorkloads, agent(["/dev/kvm", "/var/run/docker.sock"])), [
    'spec.template.spec.volumes[1].hostPath.path is "/var/run/docker.sock"; only the node agent\'s host paths (/dev/kvm, /var/lib/shardworks) may be mounted',
  ]);
});

// --- jit-binding-expiry ---------------------------------------------------------------------

const jitPolicy = createJitExpiryPolicy(() => now);
const binding = (
  annotations: Record<string, string>,
  labels: Record<string, string> = { "shardworks.dev/jit": "true" },
  type = ROLEBINDING,
): TestResource => ({
  type,
  name: "grant",
  inputs: {
    metadata: { namespace: "shard-a", labels, annotations },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "view" },
    subjects: [{ kind: "User", name: "carol" }],
  },
});

test("jit: an expiry within 8 hours passes; a binding that is no JIT grant is not checked", (t) => {
  t.deepEqual(
    messagesFor(jitPolicy, binding({ "shardworks.dev/expires-at": "2026-11-22T18:00:00Z" })),
    [],
  );
  t.deepEqual(messagesFor(jitPolicy, binding({}, {})), []);
});

test("jit: missing, malformed, past and too-long expiries are refused", (t) => {
  const at = 'metadata.annotations["shardworks.dev/expires-at"]';
  t.deepEqual(messagesFor(jitPolicy, binding({})), [
    `${at} is missing on a JIT binding (label shardworks.dev/jit); without it the grant never expires`,
  ]);
  t.deepEqual(messagesFor(jitPolicy, binding({ "shardworks.dev/expires-at": "tomorrow" })), [
    `${at}: "tomorrow" is not an RFC 3339 time, e.g. "2026-11-22T17:00:00Z"`,
  ]);
  t.deepEqual(
    messagesFor(jitPolicy, binding({ "shardworks.dev/expires-at": "2026-11-22T09:00:00Z" })),
    [`${at}: 2026-11-22T09:00:00Z is in the past (now is 2026-11-22T10:00:00.000Z)`],
  );
  // An annotated ClusterRoleBinding without the label is a JIT grant too.
  t.deepEqual(
    messagesFor(
      jitPolicy,
      binding({ "shardworks.dev/expires-at": "2026-11-22T18:00:01Z" }, {}, CLUSTERROLEBINDING),
    ),
    [`${at}: 2026-11-22T18:00:01Z is more than 8h ahead; the maximum JIT grant is 8h`],
  );
});

// --- microvm-node-groups-on-metal -------------------------------------------------------------

const awsNodeGroup = (inputs: Record<string, unknown>): TestResource => ({
  type: "aws:eks/nodeGroup:NodeGroup",
  name: "ng",
  inputs: { clusterName: "c", nodeRoleArn: "arn", subnetIds: ["s"], scalingConfig: {}, ...inputs },
});

test("metal: microvm groups on .metal types pass; system groups may use any type", (t) => {
  t.deepEqual(
    messagesFor(
      microvmNodeGroupsOnMetal,
      awsNodeGroup({
        instanceTypes: ["c6i.metal", "m7i.metal-24xl"],
        labels: { "shardworks.dev/microvm": "true" },
      }),
      awsNodeGroup({ instanceTypes: ["m6i.large"], labels: { "shardworks.dev/role": "system" } }),
    ),
    [],
  );
});

test("metal: a microvm group (by label or taint) on a non-metal type is refused", (t) => {
  t.deepEqual(
    messagesFor(
      microvmNodeGroupsOnMetal,
      awsNodeGroup({
        instanceTypes: ["c6i.metal", "m5.large"],
        taints: [{ key: "shardworks.dev/microvm", value: "true", effect: "NO_SCHEDULE" }],
      }),
      {
        type: "eks:index:ManagedNodeGroup",
        name: "mng",
        inputs: { labels: { "shardworks.dev/microvm": "true" } },
      },
    ),
    [
      'instanceTypes[1]: "m5.large" is not a metal instance type; microvm nodes need KVM, e.g. "c6i.metal"',
      'instanceTypes is not set on a microvm node group (EKS would pick t3.medium); set a metal type, e.g. "c6i.metal"',
    ],
  );
});

// --- envoy-admin-not-exposed ------------------------------------------------------------------

const bootstrap = (address: string, port = 9901): TestResource => ({
  type: CONFIGMAP,
  name: "bootstrap",
  inputs: {
    metadata: { namespace: "edge" },
    data: {
      "envoy.json": JSON.stringify({
        node: { id: "gw" },
        admin: { address: { socket_address: { address, port_value: port } } },
        dynamic_resources: {},
      }),
      "other.json": JSON.stringify({ admin: "not envoy" }),
    },
  },
});
const envoy = (ports: Record<string, unknown>[]): TestResource =>
  deployment("envoy", "edge", {
    containers: [{ name: "envoy", image: "envoyproxy/envoy:v1.36.2", ports }],
  });
const service = (ports: Record<string, unknown>[], namespace = "edge"): TestResource => ({
  type: SERVICE,
  name: `svc-${namespace}`,
  inputs: { metadata: { namespace }, spec: { ports } },
});

test("envoy: admin on loopback and only the listener published passes", (t) => {
  t.deepEqual(
    messagesFor(
      envoyAdminNotExposed,
      bootstrap("127.0.0.1", 9000),
      envoy([{ name: "http", containerPort: 8080 }]),
      service([
        { name: "http", port: 80, targetPort: 8080 },
        // The Service's own port number may equal admin's; it leads to the listener.
        { name: "alt", port: 9000, targetPort: 8080 },
      ]),
      // Port 9000 in a namespace without Envoy is someone else's.
      service([{ port: 9000 }], "other"),
    ),
    [],
  );
});

test("envoy: admin on 0.0.0.0, a container port and Service ports for admin are refused", (t) => {
  const violations = runPolicy(envoyAdminNotExposed, [
    bootstrap("0.0.0.0", 9000),
    envoy([
      { name: "http", containerPort: 8080 },
      { name: "admin", containerPort: 9000 },
    ]),
    service([
      { name: "http", port: 80, targetPort: 8080 },
      { name: "debug", port: 9000 },
      { name: "stats", port: 81, targetPort: "admin" },
    ]),
  ]);
  t.deepEqual(
    violations.map((v) => v.message),
    [
      'data["envoy.json"]: Envoy admin.address.socket_address.address is "0.0.0.0"; bind the admin interface to 127.0.0.1',
      'spec.template.spec.containers[0].ports[1]: port 9000 ("admin") is Envoy\'s admin port; do not declare it, admin must stay inside the pod',
      "spec.ports[1]: Service port 9000 -> 9000 leads to Envoy's admin port; remove it, admin must stay inside the pod",
      "spec.ports[2]: Service port 81 -> admin leads to Envoy's admin port; remove it, admin must stay inside the pod",
    ],
  );
  t.deepEqual(
    violations.map((v) => v.urn?.split("::").pop()),
    ["bootstrap", "envoy", "svc-edge", "svc-edge"],
  );
});

test("envoy: without a readable bootstrap, Envoy's default admin port 9901 is assumed", (t) => {
  t.deepEqual(messagesFor(envoyAdminNotExposed, envoy([{ containerPort: 9901 }])), [
    "spec.template.spec.containers[0].ports[0]: port 9901 is Envoy's admin port; do not declare it, admin must stay inside the pod",
  ]);
});

// --- shard-ttl-at-most-7-days -------------------------------------------------------------------

const ttlPolicy = createShardTtlPolicy(() => now);
const shardWithExpiry = (expiresAt?: string): TestResource => ({
  type: NS,
  name: "shard-a",
  inputs: {
    metadata: {
      name: "shard-a",
      annotations: expiresAt === undefined ? {} : { "shardworks.dev/expires-at": expiresAt },
    },
  },
});

test("ttl: a shard expiring within 7 days passes; other namespaces are not checked", (t) => {
  t.deepEqual(messagesFor(ttlPolicy, shardWithExpiry("2026-11-29T10:00:00.000Z")), []);
  t.deepEqual(
    messagesFor(ttlPolicy, { type: NS, name: "x", inputs: { metadata: { name: "team-x" } } }),
    [],
  );
});

test("ttl: a shard with no, a malformed, or a too-distant expiry is refused", (t) => {
  const at = 'metadata.annotations["shardworks.dev/expires-at"]';
  t.deepEqual(messagesFor(ttlPolicy, shardWithExpiry()), [
    `${at} is missing on shard namespace; every shard needs a TTL of at most 7 days`,
  ]);
  t.deepEqual(messagesFor(ttlPolicy, shardWithExpiry("2026-11-29")), [
    `${at}: "2026-11-29" is not an RFC 3339 time, e.g. "2026-11-29T17:00:00Z"`,
  ]);
  t.deepEqual(messagesFor(ttlPolicy, shardWithExpiry("2026-11-29T10:00:01Z")), [
    `${at}: 2026-11-29T10:00:01Z is more than 7 days ahead; the longest shard TTL is 7 days`,
  ]);
});

// --- platform-images-pinned (advisory) ---------------------------------------------------------

test("images: platform workloads pinned by digest pass; shard forks are not platform images", (t) => {
  t.deepEqual(
    messagesFor(
      platformImagesPinned,
      deployment("sched", "shardworks-system", {
        containers: [{ name: "s", image: `ghcr.io/shardworks/runtime@${DIGEST}` }],
      }),
      deployment(
        "fork",
        "shard-a",
        { containers: [{ name: "f", image: "acme/api:main" }] },
        {
          "app.kubernetes.io/part-of": "shardworks",
          "shardworks.dev/shard": "a",
        },
      ),
    ),
    [],
  );
});

test("images: a platform image by tag is an advisory violation", (t) => {
  const violations = runPolicy(platformImagesPinned, [
    deployment(
      "envoy",
      "shardworks-gateway",
      { containers: [{ name: "envoy", image: "envoyproxy/envoy:v1.36.2" }] },
      {
        "app.kubernetes.io/part-of": "shardworks",
      },
    ),
  ]);
  t.deepEqual(
    violations.map((v) => [v.enforcementLevel, v.message]),
    [
      [
        "advisory",
        'spec.template.spec.containers[0] ("envoy"): image "envoyproxy/envoy:v1.36.2" is not pinned by digest; use <image>@sha256:<digest>',
      ],
    ],
  );
});

test("the pack: every rule explains itself, only the image rule is advisory", (t) => {
  t.deepEqual(
    policies.map((p) => [p.name, p.enforcementLevel]),
    [
      ["shard-namespace-fences", "mandatory"],
      ["no-privileged-workloads", "mandatory"],
      ["jit-binding-expiry", "mandatory"],
      ["microvm-node-groups-on-metal", "mandatory"],
      ["envoy-admin-not-exposed", "mandatory"],
      ["shard-ttl-at-most-7-days", "mandatory"],
      ["platform-images-pinned", "advisory"],
    ],
  );
  for (const p of policies) t.regex(p.description, /^[A-Z].{40,}\.$/, p.name);
});
