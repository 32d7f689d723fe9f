/**
 * `npm run bench -- shard`: `pulumi up` of a shard stack until its fork pods are Ready, and
 * `pulumi destroy`, over 5 runs, with the real engine, language host and Kubernetes provider, on a
 * local cluster whose node runs pods; the forks run the testbed's test HTTP image from the local
 * registry. In the same run, on the same cluster, the primitive underneath: what `kubectl apply
 * --server-side` + `kubectl wait` + `kubectl delete --wait` do for the same objects (the ones the
 * stack created, read from its state), through `@kubernetes/client-node`: server-side apply of
 * each, wait until the fork Deployments' pods are Ready, delete them, wait until the namespace is
 * gone. Goals (issue 10): up ≤ 15 s, destroy ≤ 10 s. Results: `bench/results/shard.json`.
 */
import * as k8s from "@kubernetes/client-node";
import { LocalWorkspace, type Stack } from "@pulumi/pulumi/automation";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parse, stringify } from "yaml";
import { z } from "zod";
import { startEtcd } from "../runtime/lib/etcd-server";
import { startScheduler } from "../runtime/scheduler/server";
import { startCluster, stopCluster } from "../scripts/cluster";
import { ensureTestHttpImage } from "../scripts/images/catalog";
import { testbedPulumi } from "../scripts/pulumi-env";
import { ensureTools, KUBERNETES_PROVIDER_MODULE_VERSION, PULUMI_VERSION } from "../scripts/tools";
import { objectsOfShard } from "../test/helpers/kube";
import { ratio, stats } from "./lib";

const RUNS = Number(process.env.SHARDWORKS_BENCH_ITERATIONS ?? "5");
const GOALS = { upMs: 15_000, destroyMs: 10_000 } as const;
const repoRoot = resolve(__dirname, "..");
const resultsFile = join(__dirname, "results", "shard.json");
const NAMESPACE = "shard-alice";

function say(line: string): void {
  process.stderr.write(`bench shard: ${line}\n`);
}

/** The repo's stack file `from`, its config changed by `change`, into the project's `stacks/`. */
async function writeStack(
  dir: string,
  from: string,
  change: (config: Record<string, unknown>) => Record<string, unknown>,
): Promise<void> {
  const { config } = parse(await readFile(join(repoRoot, "stacks", from), "utf8")) as {
    config: Record<string, unknown>;
  };
  await writeFile(join(dir, "stacks", from), stringify({ config: change(config) }));
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
  const objects = resources
    .filter((r) => r.type.startsWith("kubernetes:") && r.inputs !== undefined)
    .map((r) => {
      const { __inputs, ...object } = r.inputs as Record<string, unknown>;
      void __inputs;
      return object;
    });
  return objects.sort((a, b) => Number(b.kind === "Namespace") - Number(a.kind === "Namespace"));
}

/** Until every fork Deployment has all its replicas updated and Ready. */
async function waitForForks(apps: k8s.AppsV1Api, names: string[]): Promise<void> {
  for (;;) {
    const ready = await Promise.all(
      names.map(async (name) => {
        const d = await apps.readNamespacedDeployment({ namespace: NAMESPACE, name });
        const want = d.spec?.replicas ?? 1;
        return (
          (d.status?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 1) &&
          d.status?.readyReplicas === want &&
          d.status?.updatedReplicas === want
        );
      }),
    );
    if (ready.every(Boolean)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
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
  const image = await ensureTestHttpImage();
  const clusterName = `bench-shard-${process.pid}`;
  const work = await mkdtemp(join(tmpdir(), "shardworks-bench-shard-"));
  const cleanups: (() => Promise<unknown>)[] = [
    () => rm(work, { recursive: true, force: true }),
    () => stopCluster(clusterName, { purge: true, log: () => undefined }),
  ];
  try {
    const cluster = await startCluster(clusterName, { log: say });
    const admin = new k8s.KubeConfig();
    admin.loadFromFile(cluster.kubeconfigPath);
    const core = admin.makeApiClient(k8s.CoreV1Api);
    const apps = admin.makeApiClient(k8s.AppsV1Api);
    const objectApi = k8s.KubernetesObjectApi.makeApiClient(admin);

    // The runtime API the shard registers with, as in test/e2e/shard.test.ts.
    const platformToken = randomBytes(32).toString("base64");
    const etcd = await startEtcd();
    cleanups.push(() => etcd.stop());
    const scheduler = await startScheduler({
      etcdEndpoints: [etcd.endpoint],
      platformToken,
      placer: false,
    });
    cleanups.push(() => scheduler.close());

    const env = await testbedPulumi(tools, cluster, work, "bench-shard");
    const dir = join(work, "project");
    await mkdir(join(dir, "stacks"), { recursive: true });
    await copyFile(join(repoRoot, "Pulumi.yaml"), join(dir, "Pulumi.yaml"));
    for (const entry of ["index.ts", "package.json", "node_modules", "tsconfig.json"]) {
      await symlink(join(repoRoot, entry), join(dir, entry));
    }
    await writeStack(dir, "Pulumi.platform-local.yaml", (c) => ({
      ...c,
      "shardworks:baseline": Object.fromEntries(
        Object.entries(c["shardworks:baseline"] as Record<string, object>).map(([svc, b]) => [
          svc,
          { ...b, image: image.ref },
        ]),
      ),
    }));
    await writeStack(dir, "Pulumi.shard-alice.yaml", (c) => {
      const forks = c["shardworks:forks"] as Record<string, object>;
      return {
        ...c,
        "shardworks:forks": { ...forks, checkout: { ...forks.checkout, image: image.tagged } },
        "shardworks:runtimeApiUrl": scheduler.url,
      };
    });
    const opts = { pulumiCommand: env.pulumiCommand, envVars: env.envVars };
    const platform = await LocalWorkspace.createOrSelectStack(
      { stackName: "platform-local", workDir: dir },
      opts,
    );
    await platform.setConfig("shardworks:kubeconfig", { value: cluster.kubeconfigPath });
    await platform.setConfig("shardworks:platformToken", { value: platformToken, secret: true });
    say("pulumi up platform-local (not measured)");
    await platform.up();
    const shard = await LocalWorkspace.createOrSelectStack(
      { stackName: "shard-alice", workDir: dir },
      opts,
    );

    const up: number[] = [];
    const destroy: number[] = [];
    const apply: number[] = [];
    const del: number[] = [];
    let objects: k8s.KubernetesObject[] = [];
    const forks = ["checkout", "payments"];
    for (let run = 1; run <= RUNS; run++) {
      let started = performance.now();
      await shard.up();
      up.push(performance.now() - started);
      // The provider awaited the forks: they are Ready now (checked, not timed).
      await waitForForks(apps, forks);
      if (objects.length === 0) objects = await objectsOf(shard);
      started = performance.now();
      await shard.destroy();
      destroy.push(performance.now() - started);
      const left = await objectsOfShard(admin, "alice");
      if (left.objects.length > 0) throw new Error(`destroy left ${left.objects.join(", ")}`);

      // The primitive: the same objects, server-side applied, awaited, deleted, awaited.
      started = performance.now();
      const [namespace, ...rest] = objects;
      if (namespace === undefined) throw new Error("the shard stack created no objects");
      await objectApi.patch(
        namespace,
        undefined,
        undefined,
        "bench",
        true,
        "application/apply-patch+yaml",
      );
      await Promise.all(
        rest.map((o) =>
          objectApi.patch(o, undefined, undefined, "bench", true, "application/apply-patch+yaml"),
        ),
      );
      await waitForForks(apps, forks);
      apply.push(performance.now() - started);
      started = performance.now();
      await Promise.all(rest.map((o) => objectApi.delete(o)));
      await objectApi.delete(namespace);
      await namespaceGone(core);
      del.push(performance.now() - started);
      say(
        `run ${run}/${RUNS}: up ${(up.at(-1)! / 1000).toFixed(1)} s, destroy ${(destroy.at(-1)! / 1000).toFixed(1)} s; ` +
          `apply+wait ${(apply.at(-1)! / 1000).toFixed(1)} s, delete+wait ${(del.at(-1)! / 1000).toFixed(1)} s`,
      );
    }
    await platform.destroy();

    const results = {
      bench: "shard",
      runs: RUNS,
      objects: objects.map((o) => `${o.apiVersion} ${o.kind} ${o.metadata?.name ?? ""}`),
      pulumi: {
        cli: PULUMI_VERSION,
        provider: `pulumi-resource-kubernetes 4.25.0 = provider/v4 ${KUBERNETES_PROVIDER_MODULE_VERSION}`,
        languageHost: "pulumi-language-nodejs (sdk/v3 v3.68.0), ts-node transpile-only",
        upMillis: stats(up),
        destroyMillis: stats(destroy),
      },
      primitive: {
        what: "server-side apply of the same objects (client-node), wait for the fork Deployments Ready; delete them, wait until the namespace is gone",
        applyAndWaitMillis: stats(apply),
        deleteAndWaitMillis: stats(del),
      },
      ratios: {
        upToApply: ratio(stats(up).p50, stats(apply).p50),
        destroyToDelete: ratio(stats(destroy).p50, stats(del).p50),
      },
      goals: {
        upMillis: GOALS.upMs,
        destroyMillis: GOALS.destroyMs,
        upMet: stats(up).p50 <= GOALS.upMs,
        destroyMet: stats(destroy).p50 <= GOALS.destroyMs,
      },
      notes: [
        "pulumi up: Automation API stack.up() (pulumi up --yes --skip-preview) on the project directory; includes starting the language host, ts-node, the program, the provider, the ShardRegistration call to the runtime API, and the provider's awaits (Deployments Ready, Service endpoints)",
        "p50 compared with the goals; runs interleaved with the primitive on the same cluster",
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
