// The whole program, as `pulumi up` would run it, on the recording mock: a local platform, an
// AWS platform (AWS/EKS resources mocked, as AWS cannot be reached from here) and a shard that
// reads the platform through a StackReference.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import * as pulumi from "@pulumi/pulumi";
import { SKIP_AWAIT_ANNOTATION, SYSTEM_NAMESPACE } from "../../components";
import { parseStackConfig } from "../../stacks/config";
import { buildStack, loadConfigOrExplain } from "../../stacks/program";
import { isKubernetesObject, kubernetesSchemaProblems, podSpecOf } from "./helpers/k8s-schema";
import {
  descendantsOf,
  named,
  ofType,
  recordBuild,
  recorded,
  unwrap,
  type MockOptions,
} from "./helpers/pulumi";
import { checkoutBaseline } from "./helpers/shards";

const TOKEN = "p".repeat(40);
const REGISTRATION = "pulumi-nodejs:dynamic/shardworks:ShardRegistration";
const KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n";
const baseline = checkoutBaseline();
/** Pinned images, as `npm run images -- build runtime gateway` prints them. */
const RUNTIME_IMAGE = `registry.example/shardworks/runtime@sha256:${"a".repeat(64)}`;
const GATEWAY_IMAGE = `registry.example/shardworks/gateway@sha256:${"b".repeat(64)}`;
const dir = mkdtempSync(join(tmpdir(), "shardworks-program-"));
/** What the mocked providers answer: the platform's outputs to shards, EKS and AWS states. */
const platformStackMocks: MockOptions = {
  state: {
    "pulumi:pulumi:StackReference": () => ({
      outputs: {
        kubeconfig: KUBECONFIG,
        baselineServices: baseline,
        gatewayNamespace: "shardworks-gateway",
        gatewayAddress: "gw.example:80",
        runtimeApiUrl: "http://shardworks-scheduler.shardworks-system.svc.cluster.local:8080",
        platformToken: TOKEN,
      },
    }),
    "eks:index:Cluster": () => ({ kubeconfigJson: '{"kind":"Config"}' }),
    "aws:ec2/launchTemplate:LaunchTemplate": () => ({ latestVersion: 1 }),
  },
};
let localOut: Record<string, unknown>;
let awsOut: Record<string, unknown>;
let shardOut: Record<string, unknown>;
let laptopShardOut: Record<string, unknown>;

test.before(async () => {
  writeFileSync(join(dir, "kubeconfig"), KUBECONFIG);
  ({ localOut, awsOut, shardOut, laptopShardOut } = await recordBuild(
    async () => ({
      // A local platform whose pods run: pinned images, a baseline routed between services.
      routedOut: await buildStack(
        parseStackConfig({
          kind: "platform",
          target: "local",
          clusterName: "routed",
          kubeconfig: join(dir, "kubeconfig"),
          platformToken: TOKEN,
          runtime: { image: RUNTIME_IMAGE, etcdStorage: "ephemeral" },
          gateway: { namespace: "edge", image: GATEWAY_IMAGE },
          baseline: {
            checkout: {
              image: "shop/checkout:1",
              port: 8080,
              namespace: "shop",
              selector: { app: "checkout" },
            },
            payments: {
              image: "shop/payments:1",
              port: 9090,
              namespace: "shop",
              selector: { app: "payments" },
            },
          },
        }),
      ),
      localOut: await buildStack(
        parseStackConfig({
          kind: "platform",
          target: "local",
          clusterName: "local",
          kubeconfig: join(dir, "kubeconfig"),
          platformToken: TOKEN,
          skipAwait: true,
          baseline,
        }),
      ),
      awsOut: await buildStack(
        parseStackConfig({
          kind: "platform",
          target: "aws",
          clusterName: "dev",
          region: "eu-west-1",
          platformToken: TOKEN,
          nodeGroups: [
            { name: "system", role: "system", instanceType: "m6i.large" },
            { name: "metal", role: "microvm", instanceType: "c6i.metal" },
          ],
          gateway: { namespace: "edge", image: GATEWAY_IMAGE },
          runtime: { image: RUNTIME_IMAGE },
        }),
      ),
      shardOut: await buildStack(
        parseStackConfig({
          kind: "shard",
          owner: "alice",
          platformStack: "organization/shardworks/platform-local",
          forks: { checkout: { env: { FEATURE: "1" } } },
        }),
      ),
      // A shard whose `pulumi up` runs on a laptop: the API through a port-forward, its own token.
      laptopShardOut: await buildStack(
        parseStackConfig({
          kind: "shard",
          owner: "bob",
          platformStack: "organization/shardworks/platform-local",
          runtimeApiUrl: "http://127.0.0.1:18080",
          platformToken: "b".repeat(40),
          ttl: "2h",
          forks: { checkout: {} },
        }),
      ),
    }),
    platformStackMocks,
  ));
});

test.after.always(() => rmSync(dir, { recursive: true, force: true }));

test("local platform: no AWS at all; Kubernetes from the given kubeconfig", (t) => {
  // Every AWS/EKS resource belongs to the AWS platform ("dev"); the local one made none.
  const awsResources = recorded.filter((r) => /^(aws|eks):|^pulumi:providers:aws$/.test(r.type));
  const ofDev = new Set([...descendantsOf("dev"), named("dev-aws")]);
  t.true(awsResources.length > 10);
  t.deepEqual(
    awsResources.filter((r) => !ofDev.has(r)).map((r) => r.name),
    [],
  );
  const provider = named("local-k8s");
  t.is(provider.type, "pulumi:providers:kubernetes");
  t.is(provider.inputs["kubeconfig"], KUBECONFIG);
  t.deepEqual(
    recorded
      .filter((r) => r.type.startsWith("shardworks:components:") && r.name.startsWith("local"))
      .map((r) => r.type)
      .sort(),
    [
      "shardworks:components:AccessControl",
      "shardworks:components:EnvoyGateway",
      "shardworks:components:RuntimeDeployment",
    ],
  );
});

test("local platform: skipAwait from config reaches every workload and Service", (t) => {
  const workloads = [...descendantsOf("local-runtime"), ...descendantsOf("local-gateway")].filter(
    (r) => /:(Deployment|DaemonSet|StatefulSet|Service)$/.test(r.type),
  );
  t.true(workloads.length >= 8);
  for (const w of workloads)
    t.is(w.inputs["metadata"].annotations[SKIP_AWAIT_ANNOTATION], "true", w.name);
});

test("local platform exports what a shard needs", async (t) => {
  t.true(await pulumi.isSecret(pulumi.output(localOut["kubeconfig"])));
  t.is(await unwrap(localOut["kubeconfig"]), KUBECONFIG);
  t.is(await unwrap(localOut["gatewayNamespace"]), "shardworks-gateway");
  t.is(await unwrap(localOut["gatewayAddress"]), "envoy.shardworks-gateway.svc.cluster.local:80");
  t.is(
    await unwrap(localOut["runtimeApiUrl"]),
    "http://shardworks-scheduler.shardworks-system.svc.cluster.local:8080",
  );
  t.deepEqual(await unwrap(localOut["baselineServices"]), baseline);
  t.is(localOut["kind"], "platform");
  t.is(localOut["maxJitDurationMs"], 8 * 3_600_000);
});

test("local platform whose pods run: every runtime and gateway container runs the pinned image", (t) => {
  const containers = [...descendantsOf("routed-runtime"), ...descendantsOf("routed-gateway")]
    .filter((r) => /:(Deployment|DaemonSet)$/.test(r.type))
    .map((r) => ({ name: r.name, image: podSpecOf(r.inputs)?.containers[0].image }));
  t.deepEqual(containers.map((c) => c.name).sort(), [
    "routed-gateway-envoy",
    "routed-runtime-node-agent",
    "routed-runtime-routing",
    "routed-runtime-scheduler",
  ]);
  for (const c of containers)
    t.is(c.image, c.name === "routed-gateway-envoy" ? GATEWAY_IMAGE : RUNTIME_IMAGE, c.name);
});

test("etcd storage: a PVC per member by default, an emptyDir where the cluster has no volumes", (t) => {
  const persistent = named("local-runtime-etcd").inputs["spec"];
  t.is(persistent.volumeClaimTemplates[0].spec.resources.requests.storage, "4Gi");
  t.is(persistent.template.spec.volumes, undefined);
  const ephemeral = named("routed-runtime-etcd").inputs["spec"];
  t.is(ephemeral.volumeClaimTemplates, undefined);
  t.deepEqual(ephemeral.template.spec.volumes, [{ name: "data", emptyDir: {} }]);
  t.deepEqual(ephemeral.template.spec.containers[0].volumeMounts, [
    { name: "data", mountPath: "/var/lib/etcd" },
  ]);
});

test("local platform with a routed baseline: service names resolve to the gateway, which listens on their ports", (t) => {
  t.is(named("routed-baseline-routing").type, "shardworks:components:BaselineRouting");
  const children = ofType("kubernetes:core/v1:Service", "routed-baseline-routing");
  t.deepEqual(
    children.map((r) => `${r.inputs["metadata"].namespace}/${r.inputs["metadata"].name}`).sort(),
    ["shop/checkout", "shop/checkout-baseline", "shop/payments", "shop/payments-baseline"],
  );
  t.is(
    named("routed-baseline-routing-checkout").inputs["spec"].externalName,
    "envoy.edge.svc.cluster.local",
  );
  t.deepEqual(
    (named("routed-gateway-service").inputs["spec"].ports as { port: number }[]).map((p) => p.port),
    [80, 8080, 9090],
  );
  // No BaselineRouting where no service is routed (the skipAwait platform above).
  t.false(recorded.some((r) => r.name === "local-baseline-routing"));
});

test("aws platform: MetalCluster first, Kubernetes provider from its kubeconfig", async (t) => {
  t.is(named("dev").type, "shardworks:components:MetalCluster");
  t.is(named("dev-aws").inputs["region"], "eu-west-1");
  t.is(named("dev-k8s").inputs["kubeconfig"], '{"kind":"Config"}');
  t.deepEqual(await unwrap(awsOut["nodeGroupNames"]), ["dev-system", "dev-metal"]);
  t.is(await unwrap(awsOut["gatewayNamespace"]), "edge");
  t.deepEqual(named("dev-eks").inputs["publicSubnetIds"].length, 2);
  t.is(named("dev-public-0").inputs["availabilityZone"], "eu-west-1a");
});

test("shard: reads the platform by StackReference and builds one DevShard", async (t) => {
  const ref = ofType("pulumi:pulumi:StackReference")[0]!;
  t.is(ref.name, "organization/shardworks/platform-local");
  t.is(named("shard-alice").type, "shardworks:components:DevShard");
  t.is(named("shard-alice-k8s").inputs["kubeconfig"], KUBECONFIG);
  t.is(await unwrap(shardOut["shardNamespace"]), "shard-alice");
  t.is(await unwrap(shardOut["routingKey"]), "shard-alice");
  t.deepEqual(await unwrap(shardOut["forkDestinations"]), {
    checkout: "checkout.shard-alice.svc.cluster.local:8080",
  });
  t.is(
    podSpecOf(named("shard-alice-fork-checkout").inputs)!.containers[0].image,
    "ghcr.io/acme/checkout:main",
  );
  t.is(await unwrap(shardOut["gatewayAddress"]), "gw.example:80");
  t.true(await pulumi.isSecret(pulumi.output(shardOut["kubeconfig"])));
});

test("shard: registers with the platform's runtime API, with the platform token", async (t) => {
  // Registrations are created once the DevShard's outputs resolve; wait for them.
  for (let i = 0; i < 100 && ofType(REGISTRATION).length < 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const registration = named("alice-registration");
  t.is(registration.type, REGISTRATION);
  t.is(registration.parent, "shard-alice");
  t.like(registration.inputs, {
    apiUrl: "http://shardworks-scheduler.shardworks-system.svc.cluster.local:8080",
    token: TOKEN,
    name: "alice",
    owner: "alice",
    routingKey: "shard-alice",
    forks: { checkout: "checkout.shard-alice.svc.cluster.local:8080" },
    ttlSeconds: 24 * 3600,
  });
  t.is(
    await unwrap(shardOut["runtimeApiUrl"]),
    "http://shardworks-scheduler.shardworks-system.svc.cluster.local:8080",
  );
  t.true(await pulumi.isSecret(pulumi.output(localOut["platformToken"])));
  t.is(await unwrap(localOut["platformToken"]), TOKEN);
});

test("shard: shardworks:runtimeApiUrl and platformToken override the platform's", async (t) => {
  for (let i = 0; i < 100 && !recorded.some((r) => r.name === "bob-registration"); i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const registration = named("bob-registration");
  t.is(registration.parent, "shard-bob");
  t.like(registration.inputs, {
    apiUrl: "http://127.0.0.1:18080",
    token: "b".repeat(40),
    name: "bob",
    routingKey: "shard-bob",
    ttlSeconds: 2 * 3600,
  });
  t.is(await unwrap(laptopShardOut["runtimeApiUrl"]), "http://127.0.0.1:18080");
});

test("no container outside shardworks-system is privileged", (t) => {
  const workloads = recorded.filter(
    (r) => isKubernetesObject(r.type) && podSpecOf(r.inputs) !== undefined,
  );
  t.true(workloads.length >= 10);
  let privileged = 0;
  for (const w of workloads) {
    for (const c of podSpecOf(w.inputs)!.containers) {
      if (c.securityContext?.privileged === true) {
        privileged += 1;
        t.is(w.inputs["metadata"].namespace, SYSTEM_NAMESPACE, w.name);
        t.regex(w.name, /-node-agent$/);
      }
    }
  }
  t.is(privileged, 3, "one node agent per platform (local, routed, dev)");
});

test("every Kubernetes object of every stack is valid against the OpenAPI schema", (t) => {
  const objects = recorded.filter((r) => isKubernetesObject(r.type));
  t.true(objects.length >= 60);
  for (const r of objects) t.deepEqual(kubernetesSchemaProblems(r.inputs), [], r.name);
});

test("a missing kubeconfig file is a clear error, not a stack trace", async (t) => {
  const error = await t.throwsAsync(() =>
    buildStack(
      parseStackConfig({
        kind: "platform",
        target: "local",
        clusterName: "nofile",
        kubeconfig: join(dir, "missing"),
        platformToken: TOKEN,
        skipAwait: true,
      }),
    ),
  );
  t.true(error instanceof pulumi.RunError);
  t.true(
    error.message.startsWith(
      `shardworks:kubeconfig: cannot read ${JSON.stringify(join(dir, "missing"))}`,
    ),
  );
});

test.serial(
  "bad stack config stops the program before any resource, with one line per problem",
  (t) => {
    const before = recorded.length;
    pulumi.runtime.setAllConfig({
      "shardworks:kind": "shard",
      "shardworks:owner": "alice",
      "shardworks:platformStack": "organization/shardworks/platform-local",
      "shardworks:ttl": "30d",
      "shardworks:forks": '{"checkout":{"port":"80"}}',
    });
    const error = t.throws(() => loadConfigOrExplain());
    t.true(error instanceof pulumi.RunError, "a RunError: Pulumi prints it without a stack trace");
    t.is(
      error?.message,
      [
        "invalid stack config:",
        'shardworks:ttl: "30d" is longer than the maximum of 7d',
        'shardworks:forks.checkout.port: expected number, got "80"',
      ].join("\n"),
    );
    t.is(recorded.length, before);
  },
);

test.serial(
  "a fork of a service the platform lacks fails before any shard resource, in one line",
  async (t) => {
    const before = recorded.length;
    const error = await t.throwsAsync(() =>
      buildStack(
        parseStackConfig({
          kind: "shard",
          owner: "bob",
          platformStack: "organization/shardworks/platform-local",
          forks: { search: {} },
        }),
      ),
    );
    t.true(error instanceof pulumi.RunError, "a RunError: Pulumi prints it without a stack trace");
    t.is(
      error?.message,
      'shardworks:forks.search: the platform has no baseline service "search"; known: checkout (in platform stack organization/shardworks/platform-local); fork one of those or add it to the platform\'s shardworks:baseline',
    );
    // Only the StackReference it had to read was registered: no provider, no DevShard.
    t.deepEqual(
      recorded.slice(before).map((r) => r.type),
      ["pulumi:pulumi:StackReference"],
    );
  },
);
