/**
 * `npm run bench -- loop` → bench/results/loop.json: the product loop's latency (issue 12). On a
 * testbed cluster with the platform running for real (runtime, gateway, the example shop as the
 * baseline, as in test/e2e/loop.test.ts), 5 times: from the start of `pulumi up` of a one-fork
 * shard (checkout, rebuilt image) to the first request through the gateway that the fork answers,
 * and `pulumi destroy`. In the same run, on the same cluster, the primitive underneath: the same
 * Kubernetes objects (read from the stack's state) server-side applied through the API server and
 * the shard registered with one `PUT /v1/shards/alice`, until the first correctly routed request;
 * then deregistered and deleted until the namespace is gone.
 */
import * as k8s from "@kubernetes/client-node";
import { LocalWorkspace, type Stack } from "@pulumi/pulumi/automation";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { stringify } from "yaml";
import { z } from "zod";
import { shopBaseline, shopObjects, type ShopImages } from "../examples/shop/deploy";
import { buildShopImage } from "../examples/shop/images";
import { startCluster, stopCluster } from "../scripts/cluster";
import { ensureEtcdImage, ensureGatewayImage, ensureRuntimeImage } from "../scripts/images/catalog";
import { testbedPulumi } from "../scripts/pulumi-env";
import { ensureTools } from "../scripts/tools";
import { stats, ratio } from "./lib";

const RUNS = 5;
const repoRoot = resolve(__dirname, "..");
const resultsFile = join(__dirname, "results", "loop.json");
const NAMESPACE = "shard-alice";
const KEY = "alice-key";

function say(line: string): void {
  process.stderr.write(`bench loop: ${line}\n`);
}

/** The version of the `checkout` hop of a request into frontend through the gateway. */
function checkoutVersion(gatewayIp: string): Promise<string | undefined> {
  return new Promise((done) => {
    const req = request(
      {
        host: gatewayIp,
        port: 80,
        path: "/",
        headers: { host: "frontend", baggage: `shardworks-routing-key=${KEY}` },
        agent: false,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => {
          try {
            const answer = JSON.parse(body) as { downstream?: { version?: string } };
            done(answer.downstream?.version);
          } catch {
            done(undefined);
          }
        });
      },
    );
    req.setTimeout(5000, () => req.destroy());
    req.on("error", () => done(undefined));
    req.end();
  });
}

/** Until the checkout hop is answered by `version`; throws after two minutes. */
async function routedTo(gatewayIp: string, version: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while ((await checkoutVersion(gatewayIp)) !== version) {
    if (Date.now() > deadline) throw new Error(`checkout never answered as ${version}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const Resource = z.object({
  type: z.string(),
  inputs: z.record(z.string(), z.unknown()).optional(),
});

/** The Kubernetes objects the stack created, as its state holds their inputs (namespace first). */
async function objectsOf(stack: Stack): Promise<k8s.KubernetesObject[]> {
  const { resources } = z
    .object({ resources: z.array(Resource).default([]) })
    .parse((await stack.exportStack()).deployment);
  return resources
    .filter((r) => r.type.startsWith("kubernetes:") && r.inputs !== undefined)
    .map((r) => {
      const { __inputs, ...object } = r.inputs as Record<string, unknown>;
      void __inputs;
      return object;
    })
    .sort((a, b) => Number(b.kind === "Namespace") - Number(a.kind === "Namespace"));
}

async function namespaceGone(core: k8s.CoreV1Api): Promise<void> {
  for (;;) {
    try {
      await core.readNamespace({ name: NAMESPACE });
    } catch (error) {
      if (error instanceof k8s.ApiException && error.code === 404) return;
      throw error;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main(): Promise<void> {
  const tools = await ensureTools();
  const runtimeImage = await ensureRuntimeImage();
  const gatewayImage = await ensureGatewayImage();
  const etcdImage = await ensureEtcdImage();
  const images: ShopImages = {
    frontend: (await buildShopImage("frontend")).ref,
    checkout: (await buildShopImage("checkout")).ref,
    payments: (await buildShopImage("payments")).ref,
  };
  const forkImage = (await buildShopImage("checkout", "alice-1")).ref;
  const clusterName = "loop-bench";
  const work = await mkdtemp(join(tmpdir(), "shardworks-bench-loop-"));
  const cleanups: (() => Promise<unknown>)[] = [
    () => rm(work, { recursive: true, force: true }),
    () => stopCluster(clusterName, { purge: true, log: () => undefined }),
  ];
  try {
    const cluster = await startCluster(clusterName, { log: say });
    const admin = new k8s.KubeConfig();
    admin.loadFromFile(cluster.kubeconfigPath);
    const core = admin.makeApiClient(k8s.CoreV1Api);
    const objectApi = k8s.KubernetesObjectApi.makeApiClient(admin);
    for (const object of shopObjects("shop", images)) await objectApi.create(object);

    const env = await testbedPulumi(tools, cluster, work, "bench-loop");
    const dir = join(work, "project");
    await mkdir(join(dir, "stacks"), { recursive: true });
    await copyFile(join(repoRoot, "Pulumi.yaml"), join(dir, "Pulumi.yaml"));
    for (const entry of ["index.ts", "package.json", "node_modules", "tsconfig.json"]) {
      await symlink(join(repoRoot, entry), join(dir, entry));
    }
    const writeStack = (stack: string, config: Record<string, unknown>) =>
      writeFile(join(dir, "stacks", `Pulumi.${stack}.yaml`), stringify({ config }));
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
        image: runtimeImage.ref,
        etcdImage: etcdImage.ref,
        etcdStorage: "ephemeral",
      },
      "shardworks:baseline": shopBaseline("shop", images),
    });
    const opts = { pulumiCommand: env.pulumiCommand, envVars: env.envVars };
    const platform = await LocalWorkspace.createOrSelectStack(
      { stackName: "platform-local", workDir: dir },
      opts,
    );
    const platformToken = randomBytes(32).toString("base64");
    await platform.setConfig("shardworks:platformToken", { value: platformToken, secret: true });
    say("pulumi up platform-local (not measured)");
    await platform.up();
    const schedulerIp = (
      await core.readNamespacedService({
        namespace: "shardworks-system",
        name: "shardworks-scheduler",
      })
    ).spec?.clusterIP;
    const gatewayIp =
      (await core.readNamespacedService({ namespace: "shardworks-gateway", name: "envoy" })).spec
        ?.clusterIP ?? "";
    const apiUrl = `http://${schedulerIp}:8080`;
    await routedTo(gatewayIp, "baseline");
    await writeStack("shard-alice", {
      "shardworks:kind": "shard",
      "shardworks:owner": "alice",
      "shardworks:platformStack": "organization/shardworks/platform-local",
      "shardworks:routingKey": KEY,
      "shardworks:runtimeApiUrl": apiUrl,
      "shardworks:forks": { checkout: { image: forkImage } },
    });
    const shard = await LocalWorkspace.createOrSelectStack(
      { stackName: "shard-alice", workDir: dir },
      opts,
    );
    const platformApi = (method: string, body?: unknown) =>
      fetch(`${apiUrl}/v1/shards/alice`, {
        method,
        headers: {
          authorization: `Bearer ${platformToken}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });

    const upToRouted: number[] = [];
    const destroy: number[] = [];
    const applyToRouted: number[] = [];
    const del: number[] = [];
    let objects: k8s.KubernetesObject[] = [];
    for (let run = 1; run <= RUNS; run++) {
      let started = performance.now();
      await shard.up();
      await routedTo(gatewayIp, "alice-1");
      upToRouted.push(performance.now() - started);
      if (objects.length === 0) objects = await objectsOf(shard);
      started = performance.now();
      await shard.destroy();
      destroy.push(performance.now() - started);
      await routedTo(gatewayIp, "baseline");

      // The primitive: the same objects through the API server, and one registration call.
      started = performance.now();
      const [namespace, ...rest] = objects;
      if (namespace === undefined) throw new Error("the shard stack created no objects");
      const apply = (o: k8s.KubernetesObject) =>
        objectApi.patch(o, undefined, undefined, "bench", true, "application/apply-patch+yaml");
      await apply(namespace);
      await Promise.all(rest.map(apply));
      const put = await platformApi("PUT", {
        routingKey: KEY,
        owner: "alice",
        ttlSeconds: 3600,
        forks: [
          { service: "checkout", destination: `checkout.${NAMESPACE}.svc.cluster.local:8080` },
        ],
      });
      if (put.status !== 201) throw new Error(`PUT /v1/shards/alice: ${put.status}`);
      await routedTo(gatewayIp, "alice-1");
      applyToRouted.push(performance.now() - started);
      started = performance.now();
      const deleted = await platformApi("DELETE");
      if (deleted.status >= 300) throw new Error(`DELETE /v1/shards/alice: ${deleted.status}`);
      await Promise.all(rest.map((o) => objectApi.delete(o)));
      await objectApi.delete(namespace);
      await namespaceGone(core);
      del.push(performance.now() - started);
      await routedTo(gatewayIp, "baseline");
      say(
        `run ${run}/${RUNS}: up→routed ${(upToRouted.at(-1)! / 1000).toFixed(1)} s, destroy ${(destroy.at(-1)! / 1000).toFixed(1)} s; ` +
          `apply+register→routed ${(applyToRouted.at(-1)! / 1000).toFixed(1)} s, deregister+delete ${(del.at(-1)! / 1000).toFixed(1)} s`,
      );
    }
    await platform.destroy();

    const results = {
      bench: "loop",
      runs: RUNS,
      objects: objects.map((o) => `${o.apiVersion} ${o.kind} ${o.metadata?.name ?? ""}`),
      pulumi: {
        what: "pulumi up of a one-fork shard (Automation API, project directory, real language host and provider) until the first request through the gateway that the fork answers; pulumi destroy",
        upToFirstRoutedMillis: stats(upToRouted),
        destroyMillis: stats(destroy),
      },
      primitive: {
        what: "server-side apply of the same objects (client-node) + PUT /v1/shards/alice until the first correctly routed request; DELETE /v1/shards/alice + delete the objects until the namespace is gone",
        applyToFirstRoutedMillis: stats(applyToRouted),
        deleteMillis: stats(del),
      },
      ratios: {
        upToApply: ratio(stats(upToRouted).p50, stats(applyToRouted).p50),
        destroyToDelete: ratio(stats(destroy).p50, stats(del).p50),
      },
      notes: [
        "the platform (runtime, gateway) and the example shop run in the testbed cluster; requests go to the gateway's ClusterIP from the host",
        "runs interleaved with the primitive on the same cluster",
        `host: ${cpus().length} CPUs shared with other work`,
      ],
      measuredAt: new Date().toISOString(),
    };
    await mkdir(join(__dirname, "results"), { recursive: true });
    await writeFile(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
    console.log(JSON.stringify(results, null, 2));
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
