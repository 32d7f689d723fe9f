import { readFileSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import { parse } from "yaml";
import {
  StackConfigError,
  configValues,
  parseStackConfig,
  type PlatformConfig,
  type ShardConfig,
} from "../../stacks/config";
import { parseDuration } from "../../stacks/duration";

const TOKEN = "x".repeat(32);
/** Pinned images, as `npm run images -- build runtime gateway` prints them. */
const RUNTIME_IMAGE = `localhost:5055/shardworks/runtime@sha256:${"a".repeat(64)}`;
const GATEWAY_IMAGE = `localhost:5055/shardworks/gateway@sha256:${"b".repeat(64)}`;
const local = {
  kind: "platform",
  target: "local",
  clusterName: "local",
  kubeconfig: "/k",
  platformToken: TOKEN,
  runtime: { image: RUNTIME_IMAGE },
  gateway: { image: GATEWAY_IMAGE },
};
const aws = {
  kind: "platform",
  target: "aws",
  clusterName: "dev",
  region: "us-east-1",
  platformToken: TOKEN,
  runtime: { image: RUNTIME_IMAGE },
  gateway: { image: GATEWAY_IMAGE },
  nodeGroups: [
    { name: "system", role: "system", instanceType: "m6i.large" },
    { name: "metal", role: "microvm", instanceType: "c6i.metal" },
  ],
};
const shard = {
  kind: "shard",
  owner: "alice",
  platformStack: "organization/shardworks/platform-local",
};

/** The problems of a config, or "valid". */
function problemsOf(raw: unknown): string {
  try {
    parseStackConfig(raw);
    return "valid";
  } catch (error) {
    if (!(error instanceof StackConfigError)) throw error;
    return error.message;
  }
}

const badConfigs: [string, unknown, string][] = [
  ["no kind", {}, 'shardworks:kind: must be "platform" or "shard"'],
  ["unknown kind", { kind: "cluster" }, 'shardworks:kind: must be "platform" or "shard"'],
  [
    "unknown target",
    { ...local, target: "gcp" },
    'shardworks:target: "gcp" is not allowed; allowed: "aws", "local"',
  ],
  [
    "microvm group on m5.large",
    {
      ...aws,
      nodeGroups: [aws.nodeGroups[0], { name: "vm", role: "microvm", instanceType: "m5.large" }],
    },
    'shardworks:nodeGroups[1].instanceType: "m5.large" is not a metal instance type; microvm nodes need KVM, e.g. "c6i.metal"',
  ],
  [
    "not an instance type",
    {
      ...aws,
      nodeGroups: [{ name: "system", role: "system", instanceType: "large" }, aws.nodeGroups[1]],
    },
    'shardworks:nodeGroups[0].instanceType: must be an EC2 instance type, e.g. "m6i.large"',
  ],
  [
    "aws without microvm group",
    { ...aws, nodeGroups: [aws.nodeGroups[0]] },
    'shardworks:nodeGroups: needs at least one group with role "microvm" for target aws',
  ],
  [
    "aws without region",
    { ...aws, region: undefined },
    "shardworks:region: is required for target aws",
  ],
  [
    "bad region",
    { ...aws, region: "mars-1" },
    'shardworks:region: must be an AWS region, e.g. "us-east-1"',
  ],
  [
    "duplicate node group",
    {
      ...aws,
      nodeGroups: [...aws.nodeGroups, { name: "metal", role: "microvm", instanceType: "c5.metal" }],
    },
    'shardworks:nodeGroups[2].name: "metal" is used by another node group',
  ],
  [
    "min above max",
    { ...aws, nodeGroups: [aws.nodeGroups[0], { ...aws.nodeGroups[1], minSize: 5, maxSize: 2 }] },
    "shardworks:nodeGroups[1].minSize: 5 is greater than maxSize (2)",
  ],
  [
    "local without kubeconfig",
    { ...local, kubeconfig: undefined },
    "shardworks:kubeconfig: is required for target local (path of the cluster's kubeconfig)",
  ],
  [
    "local with node groups",
    { ...local, nodeGroups: aws.nodeGroups },
    "shardworks:nodeGroups: is only for target aws; target local deploys into an existing cluster",
  ],
  [
    "misspelt top-level key",
    { ...local, gatway: {} },
    "shardworks:gatway: unknown key; check the spelling against docs/readme/components.md",
  ],
  [
    "misspelt nested key",
    { ...local, gateway: { ...local.gateway, replica: 2 } },
    "shardworks:gateway.replica: unknown key; check the spelling against docs/readme/components.md",
  ],
  [
    "zero gateway replicas",
    { ...local, gateway: { ...local.gateway, replicas: 0 } },
    "shardworks:gateway.replicas: 0 is less than the minimum 1",
  ],
  [
    "max replicas below replicas",
    { ...local, gateway: { ...local.gateway, replicas: 4, maxReplicas: 2 } },
    "shardworks:gateway.maxReplicas: 2 is less than replicas (4)",
  ],
  [
    "bad service type",
    { ...local, gateway: { ...local.gateway, serviceType: "Ingress" } },
    'shardworks:gateway.serviceType: "Ingress" is not allowed; allowed: "LoadBalancer", "NodePort", "ClusterIP"',
  ],
  [
    "JIT maximum over 24h",
    { ...local, access: { maxJitDuration: "2d" } },
    'shardworks:access.maxJitDuration: "2d" is longer than the maximum of 24h',
  ],
  [
    "JIT maximum not a duration",
    { ...local, access: { maxJitDuration: "eight hours" } },
    'shardworks:access.maxJitDuration: "eight hours" is not a duration; use e.g. "30m", "8h", "1h30m" or "7d"',
  ],
  [
    "bad admin role ARN",
    { ...aws, access: { adminRoleArns: ["admins"] } },
    'shardworks:access.adminRoleArns[0]: must be an IAM role ARN, e.g. "arn:aws:iam::123456789012:role/admins"',
  ],
  [
    "one scheduler replica",
    { ...local, runtime: { ...local.runtime, schedulerReplicas: 1 } },
    "shardworks:runtime.schedulerReplicas: 1 is less than the minimum 2",
  ],
  [
    "bad runtime version",
    { ...local, runtime: { ...local.runtime, version: "latest" } },
    'shardworks:runtime.version: must be a version like "0.1.0"',
  ],
  [
    "bad etcd endpoint",
    { ...local, runtime: { ...local.runtime, etcdEndpoints: ["etcd:2379"] } },
    'shardworks:runtime.etcdEndpoints[0]: must be a URL like "https://etcd-0:2379"',
  ],
  [
    "insecure registry with a scheme",
    { ...local, runtime: { ...local.runtime, insecureRegistries: ["http://10.100.0.1:5055"] } },
    'shardworks:runtime.insecureRegistries[0]: must be a registry "host[:port]" without a scheme, e.g. "10.100.0.1:5055"',
  ],
  [
    "unknown node agent driver",
    { ...local, runtime: { ...local.runtime, nodeAgentDriver: "kvm" } },
    'shardworks:runtime.nodeAgentDriver: must be "firecracker", "qemu" or "process" (bubblewrap, for nodes without KVM)',
  ],
  [
    "short platform token",
    { ...local, platformToken: "secret" },
    'shardworks:platformToken: must be at least 32 characters, e.g. "$(openssl rand -base64 32)"',
  ],
  [
    "no platform token",
    { ...local, platformToken: undefined },
    "shardworks:platformToken: is required (string)",
  ],
  [
    "skipAwait not a boolean",
    { ...local, skipAwait: "yes" },
    'shardworks:skipAwait: expected boolean, got "yes"',
  ],
  [
    "baseline service name",
    { ...local, baseline: { Checkout: { image: "c:1", port: 80 } } },
    "shardworks:baseline.Checkout: is not a valid name: must be lowercase letters, digits and '-', starting and ending with a letter or digit",
  ],
  [
    "shard TTL over 7 days",
    { ...shard, ttl: "8d" },
    'shardworks:ttl: "8d" is longer than the maximum of 7d',
  ],
  [
    "shard TTL of zero",
    { ...shard, ttl: "0h" },
    'shardworks:ttl: "0h" must be positive, e.g. "8h"',
  ],
  ["shard without owner", { ...shard, owner: undefined }, "shardworks:owner: is required (string)"],
  [
    "owner not a DNS label and no name",
    { ...shard, owner: "alice@example.com" },
    'shardworks:name: is required because owner "alice@example.com" is not a DNS label; e.g. "alice"',
  ],
  [
    "bad platform stack",
    { ...shard, platformStack: "a b" },
    'shardworks:platformStack: must be a stack name, e.g. "organization/shardworks/platform-local"',
  ],
  [
    "short routing key",
    { ...shard, routingKey: "ab" },
    "shardworks:routingKey: must be at least 4 characters",
  ],
  [
    "fork port as a string",
    { ...shard, forks: { checkout: { port: "80" } } },
    'shardworks:forks.checkout.port: expected number, got "80"',
  ],
  [
    "fork env name",
    { ...shard, forks: { checkout: { env: { "BAD-NAME": "1" } } } },
    "shardworks:forks.checkout.env.BAD-NAME: is not a valid name: must be an environment variable name",
  ],
  [
    "quota memory",
    { ...shard, quota: { memory: "8 GB" } },
    'shardworks:quota.memory: must be a Kubernetes quantity, e.g. "500m", "4" or "8Gi"',
  ],
  [
    "shard readiness timeout over an hour",
    { ...shard, readyTimeout: "2h" },
    'shardworks:readyTimeout: "2h" is longer than the maximum of 1h',
  ],
  [
    "shard readiness timeout not a duration",
    { ...shard, readyTimeout: "soon" },
    'shardworks:readyTimeout: "soon" is not a duration; use e.g. "30m", "8h", "1h30m" or "7d"',
  ],
  [
    // Shards always wait for their forks to be Ready.
    "skipAwait in a shard",
    { ...shard, skipAwait: true },
    "shardworks:skipAwait: unknown key; check the spelling against docs/readme/components.md",
  ],
  [
    "platform key in a shard",
    { ...shard, target: "aws" },
    "shardworks:target: unknown key; check the spelling against docs/readme/components.md",
  ],
  // The schema accepts these shapes; the components' own validators reject them, and their
  // messages come out here with the full key path (before any resource is registered).
  [
    "etcd endpoint with a trailing slash",
    { ...local, runtime: { ...local.runtime, etcdEndpoints: ["https://etcd:2379/"] } },
    'shardworks:runtime.etcdEndpoints[0]: "https://etcd:2379/" is not an etcd URL like "https://etcd-0:2379"',
  ],
  [
    "duplicate availability zones",
    { ...aws, availabilityZones: ["us-east-1a", "us-east-1a"] },
    'shardworks:availabilityZones: needs at least 2 distinct zones (EKS requires it), got ["us-east-1a","us-east-1a"]',
  ],
  [
    "gateway in kube-system",
    { ...local, gateway: { ...local.gateway, namespace: "kube-system" } },
    'shardworks:gateway.namespace: "kube-system" is reserved; use a namespace of its own, e.g. "shardworks-gateway"',
  ],
  [
    "gateway in a shard's namespace",
    { ...local, gateway: { ...local.gateway, namespace: "shard-alice" } },
    'shardworks:gateway.namespace: "shard-alice" starts with "shard-", the prefix of shard namespaces; use e.g. "shardworks-gateway"',
  ],
  // Images pinned by digest (ADR 0012's loop runs them on real nodes).
  [
    "runtime image by tag",
    { ...local, runtime: { image: "localhost:5055/shardworks/runtime:0.1.0" } },
    'shardworks:runtime.image: must be pinned by digest, "<name>@sha256:<64 hex>"; `npm run images -- build runtime` builds it, pushes it (--registry <host[/prefix]> for yours) and prints the reference',
  ],
  [
    "gateway image with a short digest",
    { ...local, gateway: { image: "localhost:5055/shardworks/gateway@sha256:abc" } },
    'shardworks:gateway.image: must be pinned by digest, "<name>@sha256:<64 hex>"; `npm run images -- build gateway` builds it, pushes it (--registry <host[/prefix]> for yours) and prints the reference',
  ],
  [
    "no runtime image on a cluster whose pods must run",
    { ...local, runtime: {} },
    'shardworks:runtime.image: is required: the runtime image pinned by digest, "<name>@sha256:<64 hex>"; `npm run images -- build runtime` builds it, pushes it (--registry <host[/prefix]> for yours) and prints the reference',
  ],
  // Routing between services (ADR 0012).
  [
    "empty selector",
    { ...local, baseline: { api: { image: "i:1", port: 8080, selector: {} } } },
    "shardworks:baseline.api.selector: is empty; give the labels of the service's pods, e.g. {app: checkout}",
  ],
  [
    "selector with a bad label key",
    { ...local, baseline: { api: { image: "i:1", port: 8080, selector: { "-app": "api" } } } },
    'shardworks:baseline.api.selector.-app: is not a valid name: must be a label key, e.g. "app" or "app.kubernetes.io/name"',
  ],
  [
    "routed service in a shard's namespace",
    {
      ...local,
      baseline: {
        api: { image: "i:1", port: 8080, namespace: "shard-bob", selector: { app: "api" } },
      },
    },
    'shardworks:baseline.api.namespace: "shard-bob" is a shard\'s namespace; run service "api" in the app\'s own namespace',
  ],
  [
    "region on target local",
    { ...local, region: "us-east-1" },
    "shardworks:region: is only for target aws; target local deploys into an existing cluster",
  ],
  [
    "availability zones on target local",
    { ...local, availabilityZones: ["a", "b"] },
    "shardworks:availabilityZones: is only for target aws; target local deploys into an existing cluster",
  ],
  [
    "whitespace-only platform token",
    { ...local, platformToken: " ".repeat(40) },
    'shardworks:platformToken: must not be only whitespace; e.g. "$(openssl rand -base64 32)"',
  ],
  [
    "zero CPU quota",
    { ...shard, quota: { cpu: "0" } },
    'shardworks:quota.cpu: must be more than 0, e.g. "500m", "4" or "8Gi"',
  ],
  [
    "fork name of 64 characters",
    { ...shard, forks: { ["a".repeat(64)]: {} } },
    `shardworks:forks.${"a".repeat(64)}: is not a valid name: must be at most 63 characters`,
  ],
];

for (const [title, raw, expected] of badConfigs) {
  test(`rejects: ${title}`, (t) => {
    t.is(problemsOf(raw), expected);
  });
}

test("there are at least 20 bad configs in the table", (t) => {
  t.true(badConfigs.length >= 20);
});

test("every problem is reported, one line each", (t) => {
  t.is(
    problemsOf({ ...aws, region: "mars", gateway: { ...aws.gateway, replicas: 0 }, extra: 1 }),
    [
      'shardworks:region: must be an AWS region, e.g. "us-east-1"',
      "shardworks:gateway.replicas: 0 is less than the minimum 1",
      "shardworks:extra: unknown key; check the spelling against docs/readme/components.md",
    ].join("\n"),
  );
});

test("defaults: a minimal local platform", (t) => {
  const config = parseStackConfig(local) as PlatformConfig;
  t.is(config.access.maxJitDuration, "8h");
  t.is(config.gateway.namespace, "shardworks-gateway");
  t.is(config.gateway.replicas, 2);
  t.is(config.runtime.schedulerReplicas, 2);
  t.is(config.runtime.etcdEndpoints, undefined);
  t.is(config.runtime.nodeAgentDriver, "firecracker");
  t.deepEqual(config.runtime.insecureRegistries, []);
  t.false(config.skipAwait);
});

test("defaults: a minimal shard is named after its owner, lives 24h, waits 5m for its forks", (t) => {
  const config = parseStackConfig(shard) as ShardConfig;
  t.is(config.name, "alice");
  t.is(config.ttl, "24h");
  t.is(config.readyTimeout, "5m", "pulumi up waits up to 5 minutes for the forks to be Ready");
  t.deepEqual(config.quota, { cpu: "4", memory: "8Gi", pods: 20 });
  t.deepEqual(config.forks, {});
});

test("configValues: objects and lists from JSON, booleans, strings stay strings", (t) => {
  t.deepEqual(
    configValues({
      "shardworks:kind": "platform",
      "shardworks:kubernetesVersion": "1.33",
      "shardworks:skipAwait": "true",
      "shardworks:gateway": '{"replicas":2}',
      "shardworks:availabilityZones": '["a","b"]',
      "aws:region": "us-east-1",
    }),
    {
      kind: "platform",
      kubernetesVersion: "1.33",
      skipAwait: true,
      gateway: { replicas: 2 },
      availabilityZones: ["a", "b"],
    },
  );
});

test('configValues: only boolean keys become booleans; an owner named "true" stays a name', (t) => {
  const values = configValues({
    "shardworks:kind": "shard",
    "shardworks:owner": "true",
    "shardworks:name": "t",
    "shardworks:platformStack": "organization/shardworks/platform-local",
  });
  t.is(values["owner"], "true");
  t.is((parseStackConfig(values) as ShardConfig).owner, "true");
});

test("a CPU quota below the 500m default is accepted (the LimitRange follows the quota)", (t) => {
  t.like(parseStackConfig({ ...shard, quota: { cpu: "250m", memory: "256Mi" } }), {
    quota: { cpu: "250m", memory: "256Mi" },
  });
});

/** What Pulumi hands the program for a stack file: objects as JSON, scalars as strings. */
function stackFileValues(file: string, extra: Record<string, string> = {}): Record<string, string> {
  const yaml = parse(readFileSync(join(__dirname, "../../stacks", file), "utf8")) as {
    config: Record<string, string | number | boolean | object>;
  };
  const all: Record<string, string> = { ...extra };
  for (const [key, value] of Object.entries(yaml.config)) {
    all[key] = typeof value === "object" ? JSON.stringify(value) : String(value);
  }
  return all;
}

test("the example stack files are valid (with the token set as a secret)", (t) => {
  const token = { "shardworks:platformToken": TOKEN };
  const dev = parseStackConfig(
    configValues(stackFileValues("Pulumi.platform-dev-us-east-1.yaml", token)),
  );
  t.like(dev, {
    kind: "platform",
    target: "aws",
    clusterName: "shardworks-dev",
    kubernetesVersion: "1.33",
  });
  const platformLocal = parseStackConfig(
    configValues(stackFileValues("Pulumi.platform-local.yaml", token)),
  );
  t.like(platformLocal, { kind: "platform", target: "local", skipAwait: true });
  const alice = parseStackConfig(configValues(stackFileValues("Pulumi.shard-alice.yaml")));
  t.like(alice, {
    kind: "shard",
    name: "alice",
    platformStack: "organization/shardworks/platform-local",
  });
  t.is(
    problemsOf(configValues(stackFileValues("Pulumi.platform-local.yaml"))),
    "shardworks:platformToken: is required (string)",
  );
});

test("parseDuration", (t) => {
  t.is(parseDuration("8h"), 8 * 3_600_000);
  t.is(parseDuration("1h30m"), 90 * 60_000);
  t.is(parseDuration("7d"), 7 * 86_400_000);
  t.is(parseDuration("45s"), 45_000);
  for (const bad of ["", "0m", "8", "8 h", "1.5h", "h", "30m1h"])
    t.is(parseDuration(bad), undefined, bad);
});
