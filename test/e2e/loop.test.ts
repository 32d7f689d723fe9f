/**
 * The product loop end to end (issue 12), on real parts only: a testbed cluster whose node runs
 * pods, our program through the real engine, language host and Kubernetes provider, images built
 * here without Docker and pulled from the loopback registry by digest.
 *
 * - `platform-local` (no skipped awaits): etcd, scheduler, routing controller and Envoy gateway
 *   pods Running and Ready; the routing controller serves the gateway over ADS inside the cluster.
 * - The example shop (examples/shop, a team's own Deployments) is the baseline; its Service names
 *   resolve to the gateway (ADR 0012), so every hop is routed by the key in the baggage.
 * - Shard stacks of alice (forks checkout with a rebuilt image) and bob (forks checkout and
 *   payments), up at the same time; requests through the gateway into frontend with a key in a
 *   header or in baggage set by an OpenTelemetry client; isolation between them by RBAC and by
 *   NetworkPolicy (a real connection from bob's fork to alice's, dropped by kube-router).
 * - `pulumi destroy` of alice's shard: nothing of it left over every served kind, deregistered,
 *   and her key routes to the baseline again.
 */
import test, { type ExecutionContext } from "ava";
import * as k8s from "@kubernetes/client-node";
import { defaultTextMapSetter, propagation, ROOT_CONTEXT } from "@opentelemetry/api";
import { W3CBaggagePropagator } from "@opentelemetry/core";
import { LocalWorkspace, type Stack } from "@pulumi/pulumi/automation";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { promisify } from "node:util";
import { join, resolve } from "node:path";
import { stringify } from "yaml";
import { shopBaseline, shopObjects, type ShopImages } from "../../examples/shop/deploy";
import { buildShopImage } from "../../examples/shop/images";
import type { ShopAnswer } from "../../examples/shop";
import { startCluster, stopCluster } from "../../scripts/cluster";
import {
  ensureEtcdImage,
  ensureGatewayImage,
  ensureRuntimeImage,
  ensureTestHttpImage,
} from "../../scripts/images/catalog";
import { registryPort } from "../../scripts/registry";
import { testbedPulumi } from "../../scripts/pulumi-env";
import { schedulerGates, xdsAckedGate } from "../../stacks/rollout-gates";
import type { GateResult, HealthGate } from "../../stacks/rollout-engine";
import { GATEWAY_NODE_ID, MICROVM_KEY } from "../../contract";
import { ensureTools } from "../../scripts/tools";
import { objectsOfShard } from "../helpers/kube";
import { assertRealPlugins } from "./project";

const repoRoot = resolve(__dirname, "..", "..");
const execFileAsync = promisify(execFile);
const SHOP_NS = "shop";
/** How soon after `pulumi destroy` the key must route to the baseline again (issue 11's goal). */
const PUSH_GOAL_MS = 2000;

/** `service@version` of every hop, outermost first, and the baggage the last hop received. */
function chainOf(answer: ShopAnswer): { hops: string[]; lastBaggage: string | null } {
  const hops: string[] = [];
  let lastBaggage: string | null = null;
  for (let hop: ShopAnswer | undefined = answer; hop; hop = hop.downstream as ShopAnswer) {
    hops.push(`${hop.service}@${hop.version}${"error" in hop ? ` (${String(hop.error)})` : ""}`);
    lastBaggage = hop.baggage;
  }
  return { hops, lastBaggage };
}

/** A GET of `/` on the gateway's ClusterIP (the host routes Service ranges to the node). */
function gatewayGet(
  ip: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string }> {
  return new Promise((done, fail) => {
    const req = request(
      { host: ip, port: 80, path: "/", headers: { host: "frontend", ...headers }, agent: false },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => done({ status: res.statusCode ?? 0, body }));
      },
    );
    req.setTimeout(15_000, () => req.destroy(new Error("request through the gateway timed out")));
    req.on("error", fail);
    req.end();
  });
}

/** The `baggage` header an OpenTelemetry client sends for these members. */
function otelBaggage(members: Record<string, string>): Record<string, string> {
  const bag = propagation.createBaggage(
    Object.fromEntries(Object.entries(members).map(([k, value]) => [k, { value }])),
  );
  const headers: Record<string, string> = {};
  new W3CBaggagePropagator().inject(
    propagation.setBaggage(ROOT_CONTEXT, bag),
    headers,
    defaultTextMapSetter,
  );
  return headers;
}

/** Pods of a namespace: each `name Running/Ready` (or why not). */
async function podStates(core: k8s.CoreV1Api, namespace: string): Promise<string[]> {
  const pods = await core.listNamespacedPod({ namespace });
  return pods.items
    .map((p) => {
      const ready = p.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
      // A restart is named: a slow start must be waited for (startup probes), not killed.
      const restarts = (p.status?.containerStatuses ?? []).reduce((n, c) => n + c.restartCount, 0);
      return `${p.metadata?.labels?.["app.kubernetes.io/name"] ?? p.metadata?.name} ${p.status?.phase}${ready ? " Ready" : " NOT READY"}${restarts > 0 ? ` restarted ${restarts}x` : ""}`;
    })
    .sort();
}

test("the loop: platform-local runs the runtime and the gateway, two shards fork the example shop, every hop is routed by the key, destroy leaves nothing and the key routes to the baseline again", async (t) => {
  const tools = await ensureTools();
  const progress = { progress: (line: string) => t.log(line) };
  const [runtimeImage, gatewayImage, etcdImage] = [
    await ensureRuntimeImage(progress),
    await ensureGatewayImage(progress),
    await ensureEtcdImage(progress),
  ];
  // The rollout's synthetic sandbox: busybox, run by the in-cluster node agent.
  const probeImage = await ensureTestHttpImage(progress);
  const images: ShopImages = {
    frontend: (await buildShopImage("frontend", "baseline", progress)).ref,
    checkout: (await buildShopImage("checkout", "baseline", progress)).ref,
    payments: (await buildShopImage("payments", "baseline", progress)).ref,
  };
  // A change to one service is a rebuilt image: the same code, another SERVICE_VERSION.
  const aliceCheckout = (await buildShopImage("checkout", "alice-1", progress)).ref;
  const bobCheckout = (await buildShopImage("checkout", "bob-1", progress)).ref;
  const bobPayments = (await buildShopImage("payments", "bob-1", progress)).ref;

  const clusterName = "loop-e2e";
  // A run killed before its teardown leaves its cluster (and the shop in it): start clean.
  await stopCluster(clusterName, { purge: true, log: () => undefined });
  t.teardown(() => stopCluster(clusterName, { purge: true, log: () => undefined }));
  const cluster = await startCluster(clusterName, { log: (line) => t.log(line) });
  const admin = new k8s.KubeConfig();
  admin.loadFromFile(cluster.kubeconfigPath);
  const core = admin.makeApiClient(k8s.CoreV1Api);
  // The platform team marks the nodes that run sandboxes; the node agent DaemonSet runs there.
  await core.patchNode(
    { name: cluster.nodeName!, body: { metadata: { labels: { [MICROVM_KEY]: "true" } } } },
    k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
  );
  const registryOnNode = `${cluster.network.hostIP}:${registryPort()}`;

  // The team's shop, applied as they would (their own objects, not ours).
  const objects = k8s.KubernetesObjectApi.makeApiClient(admin);
  for (const object of shopObjects(SHOP_NS, images)) {
    await objects.create(object);
  }

  const work = await mkdtemp(join(tmpdir(), "shardworks-loop-"));
  t.teardown(() => rm(work, { recursive: true, force: true }));
  const env = await testbedPulumi(tools, cluster, work, "loop-e2e-passphrase");
  const dir = join(work, "project");
  await mkdir(join(dir, "stacks"), { recursive: true });
  await copyFile(join(repoRoot, "Pulumi.yaml"), join(dir, "Pulumi.yaml"));
  for (const entry of ["index.ts", "package.json", "node_modules", "tsconfig.json"]) {
    await symlink(join(repoRoot, entry), join(dir, entry));
  }
  const writeStack = (stack: string, config: Record<string, unknown>) =>
    writeFile(join(dir, "stacks", `Pulumi.${stack}.yaml`), stringify({ config }));
  const stackOf = (stackName: string): Promise<Stack> =>
    LocalWorkspace.createOrSelectStack(
      { stackName, workDir: dir },
      { pulumiCommand: env.pulumiCommand, envVars: env.envVars },
    );
  let output = "";
  const onOutput = (out: string) => (output += out);

  // The platform: pods must run, so nothing skips its await.
  await writeStack("platform-local", {
    "shardworks:kind": "platform",
    "shardworks:target": "local",
    "shardworks:clusterName": "local",
    "shardworks:kubeconfig": cluster.kubeconfigPath,
    "shardworks:gateway": {
      image: gatewayImage.ref,
      replicas: 1,
      maxReplicas: 2,
      serviceType: "ClusterIP",
    },
    "shardworks:runtime": {
      version: "0.1.0",
      image: runtimeImage.ref,
      etcdImage: etcdImage.ref,
      // The testbed has no volume provisioner.
      etcdStorage: "ephemeral",
      // No KVM here: the node agent runs sandboxes with bubblewrap, pulling from the testbed
      // registry where the node reaches it (plain HTTP on the host's veth address).
      nodeAgentDriver: "process",
      insecureRegistries: [registryOnNode],
    },
    "shardworks:baseline": shopBaseline(SHOP_NS, images),
  });
  const platformToken = randomBytes(32).toString("base64");
  const platform = await stackOf("platform-local");
  await platform.setConfig("shardworks:platformToken", { value: platformToken, secret: true });
  const platformStarted = Date.now();
  const platformUp = await platform.up({ onOutput });
  t.log(`pulumi up platform-local: ${((Date.now() - platformStarted) / 1000).toFixed(1)} s`);
  t.is(platformUp.summary.result, "succeeded");
  assertRealPlugins(t, tools, output);

  const system = await podStates(core, "shardworks-system");
  t.log(system.join("\n"));
  t.deepEqual(system, [
    "etcd Running Ready",
    "etcd Running Ready",
    "etcd Running Ready",
    "node-agent Running Ready",
    "routing Running Ready",
    "routing Running Ready",
    "scheduler Running Ready",
    "scheduler Running Ready",
  ]);
  t.deepEqual(await podStates(core, "shardworks-gateway"), ["gateway Running Ready"]);

  const scheduler = await core.readNamespacedService({
    namespace: "shardworks-system",
    name: "shardworks-scheduler",
  });
  const apiUrl = `http://${scheduler.spec?.clusterIP}:8080`;
  const gateway = await core.readNamespacedService({
    namespace: "shardworks-gateway",
    name: "envoy",
  });
  const gatewayIp = gateway.spec?.clusterIP ?? "";
  const shop = async (headers: Record<string, string> = {}) => {
    const response = await gatewayGet(gatewayIp, headers);
    t.is(response.status, 200, response.body);
    return chainOf(JSON.parse(response.body) as ShopAnswer);
  };
  const baseline = ["frontend@baseline", "checkout@baseline", "payments@baseline"];
  // How long after `pulumi up` returned the gateway answers through every hop (logged).
  const upReturned = Date.now();
  let first = await gatewayGet(gatewayIp, {});
  while (first.status !== 200 && Date.now() - upReturned < 30_000) {
    await new Promise((r) => setTimeout(r, 200));
    first = await gatewayGet(gatewayIp, {});
  }
  t.log(`first answer through the gateway ${Date.now() - upReturned} ms after up returned`);
  t.deepEqual((await shop()).hops, baseline, "through the in-cluster gateway, every hop baseline");

  // The rollout's four gates ask this in-cluster runtime, as `npm run rollout` would: the
  // scheduler's /healthz from a scheduler of the deployed version, the node agent (a DaemonSet pod)
  // registered, a synthetic sandbox it pulls and runs to exit 0, and every routing controller
  // replica's CSDS (the gateway, configured over ADS inside the cluster, ACKed all it was sent).
  const gateOptions = { token: platformToken, schedulerUrl: () => Promise.resolve(apiUrl) };
  const gates = [
    ...schedulerGates({
      ...gateOptions,
      syntheticSandbox: {
        image: probeImage.ref.replace(/^localhost:[0-9]+/, registryOnNode),
        command: ["/bin/busybox", "true"],
      },
    }),
    xdsAckedGate({
      ...gateOptions,
      nodeId: GATEWAY_NODE_ID,
      expectedClients: () => Promise.resolve(1),
    }),
  ];
  t.deepEqual(
    gates.map((gate) => gate.name),
    ["scheduler-healthz", "node-agents-registered", "synthetic-sandbox", "xds-acked"],
  );
  const gateResult = async (gate: HealthGate, version: string): Promise<GateResult> => {
    const context = { stack: "platform-local", version, syntheticSandboxSloMs: 30_000 };
    const deadline = Date.now() + 60_000;
    for (;;) {
      const result = await gate.check({ ...context, signal: AbortSignal.timeout(60_000) });
      if (result.ok || Date.now() > deadline) return result;
      await new Promise((r) => setTimeout(r, 1000));
    }
  };
  for (const gate of gates) t.deepEqual(await gateResult(gate, "0.1.0"), { ok: true }, gate.name);
  // …and they do read it: another version does not pass (at once, no retry).
  for (const gate of [gates[0]!, gates[3]!]) {
    const other = await gate.check({
      stack: "platform-local",
      version: "0.2.0",
      syntheticSandboxSloMs: 30_000,
      signal: AbortSignal.timeout(30_000),
    });
    t.like(other, { ok: false }, gate.name);
    t.regex("reason" in other ? other.reason : "", /0\.1\.0, not 0\.2\.0/, gate.name);
  }

  // Two developers' shards at once, registered through the in-cluster runtime API.
  const shardConfig = (owner: string, forks: Record<string, { image: string }>) => ({
    "shardworks:kind": "shard",
    "shardworks:owner": owner,
    "shardworks:platformStack": "organization/shardworks/platform-local",
    "shardworks:routingKey": `${owner}-key`,
    "shardworks:ttl": "2h",
    "shardworks:runtimeApiUrl": apiUrl,
    "shardworks:forks": forks,
  });
  await writeStack("shard-alice", shardConfig("alice", { checkout: { image: aliceCheckout } }));
  await writeStack(
    "shard-bob",
    shardConfig("bob", { checkout: { image: bobCheckout }, payments: { image: bobPayments } }),
  );
  const alice = await stackOf("shard-alice");
  const bob = await stackOf("shard-bob");
  const aliceStarted = Date.now();
  const aliceUp = await alice.up({ onOutput });
  t.log(`pulumi up shard-alice: ${((Date.now() - aliceStarted) / 1000).toFixed(1)} s`);
  t.is(aliceUp.summary.result, "succeeded");
  t.is((await bob.up({ onOutput })).summary.result, "succeeded");

  const aliceChain = ["frontend@baseline", "checkout@alice-1", "payments@baseline"];
  const viaBaggage = await shop(
    otelBaggage({ "shardworks-routing-key": "alice-key", tenant: "acme" }),
  );
  t.deepEqual(viaBaggage.hops, aliceChain, "baseline frontend reaches alice's checkout fork");
  t.is(viaBaggage.lastBaggage, "shardworks-routing-key=alice-key,tenant=acme");
  const viaHeader = await shop({ "x-shardworks-routing-key": "alice-key" });
  t.deepEqual(viaHeader.hops, aliceChain, "a header key too, on every hop");
  t.is(viaHeader.lastBaggage, "shardworks-routing-key=alice-key", "the key still in the baggage");
  t.deepEqual(
    (await shop(otelBaggage({ "shardworks-routing-key": "bob-key" }))).hops,
    ["frontend@baseline", "checkout@bob-1", "payments@bob-1"],
    "bob's key: bob's forks only, the payments hop too",
  );
  t.deepEqual((await shop(otelBaggage({ tenant: "acme" }))).hops, baseline, "no key: baseline");

  // RBAC: each owner may work in their shard and not in the other's.
  const authz = admin.makeApiClient(k8s.AuthorizationV1Api);
  const may = async (user: string, namespace: string) =>
    (
      await authz.createSubjectAccessReview({
        body: {
          apiVersion: "authorization.k8s.io/v1",
          kind: "SubjectAccessReview",
          spec: { user, resourceAttributes: { namespace, verb: "create", resource: "pods" } },
        },
      })
    ).status?.allowed === true;
  t.true(await may("alice", "shard-alice"));
  t.false(await may("alice", "shard-bob"));
  t.false(await may("bob", "shard-alice"));
  // NetworkPolicy (kube-router's firewall on the node): a real connection from bob's fork to
  // alice's fork is dropped; the same pod reaches the baseline, so the pod has a network.
  const alicePod = (
    await core.listNamespacedPod({
      namespace: "shard-alice",
      labelSelector: "shardworks.dev/fork-of=checkout",
    })
  ).items[0]?.status?.podIP;
  t.truthy(alicePod, "alice's fork pod has an IP");
  const fromBob = async (url: string) => {
    const script = `fetch(${JSON.stringify(url)},{signal:AbortSignal.timeout(3000)}).then(r=>console.log("status "+r.status),e=>console.log("blocked "+(e.cause?.code??e.name)))`;
    const { stdout } = await execFileAsync(
      "kubectl",
      ["-n", "shard-bob", "exec", "deploy/checkout", "--", "node", "-e", script],
      { env: { ...process.env, KUBECONFIG: cluster.kubeconfigPath }, timeout: 60_000 },
    );
    return stdout.trim();
  };
  t.is(await fromBob("http://frontend-baseline.shop.svc.cluster.local:8080/healthz"), "status 200");
  t.regex(
    await fromBob(`http://${alicePod}:8080/healthz`),
    /^blocked /,
    "bob's pod cannot connect to alice's fork",
  );

  // Destroy alice's shard: nothing of it left, deregistered, her key routes to the baseline.
  const destroyStarted = Date.now();
  const destroyed = await alice.destroy({ onOutput });
  const destroyedAt = Date.now();
  t.log(`pulumi destroy shard-alice: ${((destroyedAt - destroyStarted) / 1000).toFixed(1)} s`);
  t.is(destroyed.summary.result, "succeeded");
  let routedBack = Number.NaN;
  for (let i = 0; i < 100; i++) {
    if (
      (await shop(otelBaggage({ "shardworks-routing-key": "alice-key" }))).hops[1] ===
      "checkout@baseline"
    ) {
      routedBack = Date.now() - destroyedAt;
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  t.log(`alice's key routes to the baseline ${routedBack} ms after destroy returned`);
  t.true(routedBack <= PUSH_GOAL_MS, `routed back after ${routedBack} ms`);
  const left = await objectsOfShard(admin, "alice");
  t.true(left.kinds > 40, `listed ${left.kinds} kinds`);
  t.deepEqual(left.objects, [], "nothing of alice's shard is left, over every served kind");
  const registered = await fetch(`${apiUrl}/v1/shards/alice`, {
    headers: { authorization: `Bearer ${platformToken}` },
  });
  t.is(registered.status, 404, "alice's shard is deregistered");
  t.deepEqual(
    (await shop(otelBaggage({ "shardworks-routing-key": "bob-key" }))).hops,
    ["frontend@baseline", "checkout@bob-1", "payments@bob-1"],
    "bob's shard is untouched",
  );
  await destroyAll(t, [bob, platform]);
});

/** Tear the remaining stacks down (the cluster is removed by the teardown either way). */
async function destroyAll(t: ExecutionContext, stacks: Stack[]): Promise<void> {
  for (const stack of stacks) t.is((await stack.destroy()).summary.result, "succeeded");
}
