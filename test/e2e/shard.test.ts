/**
 * Issue 5's real path: OUR program (`index.ts`) through the real Pulumi engine into a real local API
 * server (etcd + kube-apiserver with RBAC + controller manager). The platform-local stack, then the
 * shards of alice and bob, with the config of `stacks/Pulumi.platform-local.yaml` and
 * `stacks/Pulumi.shard-alice.yaml` (copied with `Pulumi.yaml` into a temp project dir, because the
 * engine writes the stack files: the secrets salt and the per-run kubeconfig path and token).
 *
 * The Automation API runs the program inline: this Node.js process is its language host (the real
 * `pulumi-language-nodejs` cannot be built here). `@pulumi/kubernetes` resources go through
 * `pulumi-resource-kubernetes` on the tools PATH: the real one when it could be built, else the
 * testbed stand-in (scripts/testbed-provider); the test says LOUDLY which.
 */
import test, { type ExecutionContext } from "ava";
import * as k8s from "@kubernetes/client-node";
import {
  LocalWorkspace,
  type PulumiCommand,
  type Stack,
  type PreviewResult,
} from "@pulumi/pulumi/automation";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { z } from "zod";
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parse, stringify } from "yaml";
import { startCluster, stopCluster, type Cluster } from "../../scripts/cluster";
import { testbedPulumi } from "../../scripts/pulumi-env";
import {
  ensureTools,
  usesTestbedLanguageHost,
  usesTestbedProvider,
  type Tools,
} from "../../scripts/tools";
import { statusOf } from "../helpers/kube";
import { startEtcd } from "../../runtime/lib/etcd-server";
import { startScheduler } from "../../runtime/scheduler/server";

const execFileAsync = promisify(execFile);
const repoRoot = resolve(__dirname, "..", "..");
const indexPath = join(repoRoot, "index.ts");

/** The inline program: `index.ts`'s exports, evaluated afresh for each run (it builds on import). */
function program(): Promise<Record<string, unknown>> {
  delete require.cache[require.resolve(indexPath)];
  // require, not import(): index.ts builds the stack when evaluated, and only require's cache can be
  // cleared to evaluate it again for the next stack.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return Promise.resolve(require(indexPath) as Record<string, unknown>);
}

function loud(t: ExecutionContext, lines: string[]): void {
  const banner = "!".repeat(96);
  for (const line of [banner, ...lines.map((l) => `!!! ${l}`), banner]) {
    t.log(line);
    process.stderr.write(`${line}\n`);
  }
}

function announce(t: ExecutionContext, tools: Tools): void {
  const lines = [
    "language host of up/destroy: this Node.js process (Automation API inline program);",
    usesTestbedLanguageHost(tools)
      ? "  of the CLI previews: the TESTBED STAND-IN for pulumi-language-nodejs (scripts/testbed-language-host)."
      : "  of the CLI previews: the real pulumi-language-nodejs.",
  ];
  if (usesTestbedProvider(tools)) {
    lines.push(
      "resource provider: the TESTBED STAND-IN for pulumi-resource-kubernetes",
      "  (scripts/testbed-provider: server-side apply/get/delete). UNVERIFIED here: the real",
      "  provider's await logic, diffing, SSA field ownership and replacement rules.",
    );
  } else {
    lines.push("resource provider: the real pulumi-resource-kubernetes from the tools cache.");
  }
  loud(t, lines);
}

/** Names of everything cluster-wide our program could leave behind. */
async function clusterInventory(config: k8s.KubeConfig): Promise<string[]> {
  const core = config.makeApiClient(k8s.CoreV1Api);
  const rbac = config.makeApiClient(k8s.RbacAuthorizationV1Api);
  const namespaces = (await core.listNamespace()).items.map((n) => `ns/${n.metadata?.name}`);
  const roles = (await rbac.listClusterRole()).items.map((r) => `clusterrole/${r.metadata?.name}`);
  const bindings = (await rbac.listClusterRoleBinding()).items.map(
    (b) => `clusterrolebinding/${b.metadata?.name}`,
  );
  return [...namespaces, ...roles, ...bindings].sort();
}

/** client-node returns model class instances; compare their JSON. */
function plain(value: unknown): unknown {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

function changesOf(preview: PreviewResult): [string, number][] {
  return Object.entries(preview.changeSummary).filter(([op, n]) => op !== "same" && n > 0);
}

interface Project {
  dir: string;
  pulumiCommand: PulumiCommand;
  envVars: Record<string, string>;
}

async function stackOf(project: Project, stackName: string): Promise<Stack> {
  return LocalWorkspace.createOrSelectStack(
    { stackName, projectName: "shardworks", program },
    { workDir: project.dir, pulumiCommand: project.pulumiCommand, envVars: project.envVars },
  );
}

/** A shard stack file derived from alice's (same forks and quota), for another owner. */
async function writeShardStack(project: Project, owner: string, extra: object = {}): Promise<void> {
  const alice = parse(
    await readFile(join(repoRoot, "stacks", "Pulumi.shard-alice.yaml"), "utf8"),
  ) as { config: Record<string, unknown> };
  const config = { ...alice.config, "shardworks:owner": owner, ...extra };
  await writeFile(
    join(project.dir, "stacks", `Pulumi.shard-${owner.replace(/[^a-z0-9-]/g, "")}.yaml`),
    stringify({ config }),
  );
}

test("our program through the real engine: platform-local and shard stacks on a real API server, RBAC, clean preview, bad config, destroy", async (t) => {
  const tools = await ensureTools();
  announce(t, tools);

  const name = `e2e-shard-${process.pid}`;
  t.teardown(() => stopCluster(name, { purge: true, log: () => undefined }));
  const cluster: Cluster = await startCluster(name, { log: (line) => t.log(line) });
  const admin = new k8s.KubeConfig();
  admin.loadFromFile(cluster.kubeconfigPath);
  const core = admin.makeApiClient(k8s.CoreV1Api);
  const before = await clusterInventory(admin);

  const work = await mkdtemp(join(tmpdir(), "shardworks-shard-"));
  t.teardown(() => rm(work, { recursive: true, force: true }));
  const env = await testbedPulumi(tools, cluster, work, "shard-e2e-passphrase");
  const project: Project = {
    dir: join(work, "project"),
    pulumiCommand: env.pulumiCommand,
    envVars: env.envVars,
  };
  await mkdir(join(project.dir, "stacks"), { recursive: true });
  await copyFile(join(repoRoot, "Pulumi.yaml"), join(project.dir, "Pulumi.yaml"));
  // For the CLI runs (language host) and its check that `main` exists: the program and the
  // packages it needs, by symlink (modules resolve to the repo's real paths).
  for (const entry of ["index.ts", "package.json", "node_modules"]) {
    await symlink(join(repoRoot, entry), join(project.dir, entry));
  }
  for (const file of ["Pulumi.platform-local.yaml", "Pulumi.shard-alice.yaml"]) {
    await copyFile(join(repoRoot, "stacks", file), join(project.dir, "stacks", file));
  }
  // The runtime API the shards register with (ShardRegistration): a real scheduler on a real
  // etcd, run here as local processes (the testbed has no kubelet), reached through the
  // documented `shardworks:runtimeApiUrl` override; its token is the platform stack's.
  const platformToken = randomBytes(32).toString("base64");
  const runtimeEtcd = await startEtcd();
  t.teardown(() => runtimeEtcd.stop());
  const scheduler = await startScheduler({
    etcdEndpoints: [runtimeEtcd.endpoint],
    platformToken,
    placer: false,
  });
  t.teardown(() => scheduler.close());
  const shardApi = (shard: string) =>
    fetch(`${scheduler.url}/v1/shards/${shard}`, {
      headers: { authorization: `Bearer ${platformToken}` },
    }).then((r) => r.status);
  await writeShardStack(project, "bob", { "shardworks:runtimeApiUrl": scheduler.url });
  const log = (out: string) => t.log(out.trimEnd());
  // The CLI on the project directory: `pulumi-language-nodejs` runs the program (not inline).
  const cli = (args: string[]) =>
    execFileAsync(tools.pulumi, [...args, "--non-interactive", "--cwd", project.dir], {
      env: { ...process.env, ...project.envVars },
    }).then(
      ({ stdout, stderr }) => ({ ok: true, output: `${stdout}${stderr}` }),
      (error: { stdout?: string; stderr?: string }) => ({
        ok: false,
        output: `${error.stdout ?? ""}${error.stderr ?? ""}`,
      }),
    );

  // The platform: AccessControl, RuntimeDeployment, EnvoyGateway into the local cluster.
  const platform = await stackOf(project, "platform-local");
  await platform.setConfig("shardworks:kubeconfig", { value: cluster.kubeconfigPath });
  await platform.setConfig("shardworks:platformToken", { value: platformToken, secret: true });
  const platformStarted = Date.now();
  const platformUp = await platform.up({ onOutput: log });
  t.log(`pulumi up platform-local: ${((Date.now() - platformStarted) / 1000).toFixed(1)} s`);
  t.is(platformUp.summary.result, "succeeded");

  // Alice's shard, then bob's.
  const alice = await stackOf(project, "shard-alice");
  await alice.setConfig("shardworks:runtimeApiUrl", { value: scheduler.url });
  const shardStarted = Date.now();
  const aliceUp = await alice.up({ onOutput: log });
  const shardSeconds = (Date.now() - shardStarted) / 1000;
  t.log(`pulumi up shard-alice: ${shardSeconds.toFixed(1)} s`);
  t.is(aliceUp.summary.result, "succeeded");
  t.is(aliceUp.outputs.shardNamespace?.value, "shard-alice");
  // Bob's the way a user does it: `pulumi up` of the project directory with the CLI.
  await cli(["stack", "init", "shard-bob"]);
  const bobStarted = Date.now();
  const bobUp = await cli(["up", "--yes", "--stack", "shard-bob"]);
  const bobSeconds = (Date.now() - bobStarted) / 1000;
  t.log(`pulumi up (CLI) shard-bob: ${bobSeconds.toFixed(1)} s\n${bobUp.output}`);
  t.true(bobUp.ok, "pulumi up of shard-bob must succeed");
  t.is(await shardApi("alice"), 200, "pulumi up registered alice's shard with the runtime API");
  t.is(await shardApi("bob"), 200, "pulumi up (CLI) registered bob's shard with the runtime API");

  // What issue 5 lists, read back from the API server.
  const ns = await core.readNamespace({ name: "shard-alice" });
  t.is(ns.status?.phase, "Active");
  t.is(ns.metadata?.annotations?.["shardworks.dev/owner"], "alice");
  t.truthy(Date.parse(ns.metadata?.annotations?.["shardworks.dev/expires-at"] ?? ""));
  const quota = await core.readNamespacedResourceQuota({
    namespace: "shard-alice",
    name: "shard-quota",
  });
  t.deepEqual(plain(quota.spec?.hard), {
    "limits.cpu": "4",
    "limits.memory": "8Gi",
    pods: "20",
    "requests.cpu": "4",
    "requests.memory": "8Gi",
    "services.loadbalancers": "0",
    "services.nodeports": "0",
  });
  const limits = await core.readNamespacedLimitRange({
    namespace: "shard-alice",
    name: "shard-limits",
  });
  t.deepEqual(plain(limits.spec?.limits[0]?._default), { cpu: "500m", memory: "512Mi" });
  const networking = admin.makeApiClient(k8s.NetworkingV1Api);
  const deny = await networking.readNamespacedNetworkPolicy({
    namespace: "shard-alice",
    name: "default-deny-ingress",
  });
  t.deepEqual(deny.spec?.policyTypes, ["Ingress"]);
  t.deepEqual(plain(deny.spec?.podSelector), {});
  const rbac = admin.makeApiClient(k8s.RbacAuthorizationV1Api);
  const owner = await rbac.readNamespacedRoleBinding({
    namespace: "shard-alice",
    name: "shard-owner",
  });
  t.deepEqual(
    owner.subjects?.map((s) => `${s.kind}/${s.name}`),
    ["User/alice"],
  );
  t.is(owner.roleRef.name, "shardworks:shard-owner");
  const apps = admin.makeApiClient(k8s.AppsV1Api);
  const checkout = await apps.readNamespacedDeployment({
    namespace: "shard-alice",
    name: "checkout",
  });
  const container = checkout.spec?.template.spec?.containers[0];
  t.is(container?.image, "ghcr.io/shardworks/demo-checkout:alice-new-cart");
  t.deepEqual(plain(container?.env), [{ name: "FEATURE_NEW_CART", value: "true" }]);
  const payments = await apps.readNamespacedDeployment({
    namespace: "shard-alice",
    name: "payments",
  });
  // A fork with only env keeps the baseline image.
  t.is(payments.spec?.template.spec?.containers[0]?.image, "ghcr.io/shardworks/demo-payments:main");
  const service = await core.readNamespacedService({ namespace: "shard-alice", name: "checkout" });
  t.deepEqual(
    service.spec?.ports?.map((p) => [p.port, p.targetPort]),
    [[8080, 8080]],
  );
  t.is(service.spec?.selector?.["shardworks.dev/fork-of"], "checkout");

  // Real RBAC: alice acts in her shard and is refused in bob's (and bob in hers).
  const asUser = (user: string) => {
    const config = new k8s.KubeConfig();
    config.loadFromFile(cluster.kubeconfigPathFor(user));
    return config.makeApiClient(k8s.CoreV1Api);
  };
  const configMap = (name: string) => ({ metadata: { name }, data: { by: "e2e" } });
  t.is(
    await statusOf(() =>
      asUser("alice").createNamespacedConfigMap({
        namespace: "shard-alice",
        body: configMap("alice-notes"),
      }),
    ),
    200,
    "alice must be able to create a ConfigMap in her shard",
  );
  t.is(await statusOf(() => asUser("alice").listNamespacedPod({ namespace: "shard-alice" })), 200);
  t.is(
    await statusOf(() =>
      asUser("alice").createNamespacedConfigMap({
        namespace: "shard-bob",
        body: configMap("intruder"),
      }),
    ),
    403,
    "alice must be refused in bob's shard",
  );
  t.is(await statusOf(() => asUser("alice").listNamespacedPod({ namespace: "shard-bob" })), 403);
  t.is(await statusOf(() => asUser("bob").listNamespacedPod({ namespace: "shard-alice" })), 403);
  t.is(await statusOf(() => asUser("carol").listNamespacedPod({ namespace: "shard-alice" })), 403);
  await core.deleteNamespacedConfigMap({ namespace: "shard-alice", name: "alice-notes" });

  // preview after up: no changes, for the shard and for the platform.
  for (const stack of [alice, platform]) {
    const preview = await stack.preview({ diff: true });
    if (changesOf(preview).length > 0) t.log(preview.stdout);
    t.deepEqual(changesOf(preview), [], `preview of ${stack.name} after up must show no changes`);
  }

  // The same through the CLI on the project directory (language host + provider plugin).
  const cliPreview = await cli([
    "preview",
    "--expect-no-changes",
    "--diff",
    "--stack",
    "shard-alice",
  ]);
  t.true(cliPreview.ok, `pulumi preview --expect-no-changes of shard-alice:\n${cliPreview.output}`);

  // Bad config: preview (and up) fail with the schema's message, and nothing is created.
  await writeShardStack(project, "mallory", {
    "shardworks:owner": "mal lory",
    "shardworks:name": "mallory",
  });
  const inventoryBeforeBad = await clusterInventory(admin);
  await cli(["stack", "init", "shard-mallory"]);
  const badPreview = await cli(["preview", "--stack", "shard-mallory"]);
  t.log(`bad config, pulumi preview:\n${badPreview.output}`);
  t.false(badPreview.ok, "preview of a bad config must fail");
  t.regex(badPreview.output, /shardworks:owner: must not contain spaces/);
  t.notRegex(badPreview.output, /at \S+\.ts:\d+/, "no stack trace for a config error");
  const badUp = await cli(["up", "--yes", "--stack", "shard-mallory"]);
  t.false(badUp.ok, "up of a bad config must fail");
  t.regex(badUp.output, /shardworks:owner: must not contain spaces/);
  t.deepEqual(await clusterInventory(admin), inventoryBeforeBad);
  t.is(await statusOf(() => core.readNamespace({ name: "shard-mallory" })), 404);
  const bad = await stackOf(project, "shard-mallory");
  // The state holds at most the root Stack component: no provider, no Kubernetes object.
  const badState = z
    .object({ resources: z.array(z.object({ type: z.string() })).optional() })
    .parse((await bad.exportStack()).deployment);
  t.deepEqual(
    (badState.resources ?? []).map((r) => r.type).filter((type) => type !== "pulumi:pulumi:Stack"),
    [],
  );

  // destroy: the shards, then the platform; nothing of ours is left.
  const bobDestroyed = await cli(["destroy", "--yes", "--stack", "shard-bob"]);
  t.true(bobDestroyed.ok, `pulumi destroy of shard-bob:\n${bobDestroyed.output}`);
  t.is(await statusOf(() => core.readNamespace({ name: "shard-bob" })), 404);
  for (const stack of [alice, platform]) {
    const destroyed = await stack.destroy({ onOutput: log });
    t.is(destroyed.summary.result, "succeeded");
  }
  t.is(await statusOf(() => core.readNamespace({ name: "shard-alice" })), 404);
  t.deepEqual(await clusterInventory(admin), before, "destroy must leave nothing behind");
  t.is(await shardApi("alice"), 404, "pulumi destroy deregistered alice's shard");
  t.is(await shardApi("bob"), 404, "pulumi destroy deregistered bob's shard");
  for (const stack of ["shard-mallory", "shard-bob", "shard-alice", "platform-local"]) {
    await platform.workspace.removeStack(stack);
  }
  t.log(`RESULT pulumi up shard-alice (inline): ${shardSeconds.toFixed(1)} s`);
  t.log(`RESULT pulumi up shard-bob (CLI + language host): ${bobSeconds.toFixed(1)} s`);
});
