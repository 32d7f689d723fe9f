/**
 * Issue 5's real path, on real parts only: OUR program (`index.ts`) run by the real
 * `pulumi-language-nodejs` (Automation API on a project directory, and the CLI), its objects
 * created by the real `pulumi-resource-kubernetes`, in a local cluster whose node runs pods
 * (etcd, kube-apiserver with RBAC, every controller, scheduler, kubelet + containerd). The
 * platform-local stack, then the shards of alice and bob, with the config of
 * `stacks/Pulumi.platform-local.yaml` and `stacks/Pulumi.shard-alice.yaml` (copied into a temp
 * project dir, because the engine writes the stack files), their images switched to the testbed's
 * test HTTP image in the local registry. Shards do not skip awaits: `pulumi up` returns when the
 * fork pods are Ready, and fails, naming the fork and the reason, when they cannot be.
 */
import test from "ava";
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
import { ensureTestHttpImage } from "../../scripts/images/catalog";
import { testbedPulumi } from "../../scripts/pulumi-env";
import { ensureTools } from "../../scripts/tools";
import { allObjects, describeObject, objectsOfShard, statusOf } from "../helpers/kube";
import { startEtcd } from "../../runtime/lib/etcd-server";
import { startScheduler } from "../../runtime/scheduler/server";
import { assertRealPlugins } from "./project";

const execFileAsync = promisify(execFile);
const repoRoot = resolve(__dirname, "..", "..");

/**
 * Everything of our program anywhere in the cluster, over every kind the API server serves: objects
 * in a `shard-*` or `shardworks-*` namespace or labelled `app.kubernetes.io/part-of=shardworks`,
 * and cluster-scoped objects named `shardworks…` or `shard-…`.
 */
async function ourObjects(config: k8s.KubeConfig): Promise<string[]> {
  const { objects } = await allObjects(config);
  return objects
    .filter(
      (o) =>
        /^shard(works)?-/.test(o.namespace ?? "") ||
        o.labels["app.kubernetes.io/part-of"] === "shardworks" ||
        (o.namespace === undefined && /^shard(works|-)/.test(o.name)),
    )
    .map(describeObject)
    .sort();
}

/** The fork's pods and whether each is Ready, read right when `pulumi up` returned. */
async function forkPods(core: k8s.CoreV1Api, namespace: string, fork: string) {
  const pods = await core.listNamespacedPod({
    namespace,
    labelSelector: `shardworks.dev/fork-of=${fork}`,
  });
  return pods.items.map((p) => ({
    image: p.spec?.containers[0]?.image,
    ready: p.status?.conditions?.find((c) => c.type === "Ready")?.status === "True",
  }));
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

/** A stack of the project directory: the real language host runs `index.ts`. */
async function stackOf(project: Project, stackName: string): Promise<Stack> {
  return LocalWorkspace.createOrSelectStack(
    { stackName, workDir: project.dir },
    { pulumiCommand: project.pulumiCommand, envVars: project.envVars },
  );
}

/** The repo's stack file `file`, its `shardworks:*` config changed by `change`, in the project. */
async function writeStack(
  project: Project,
  from: string,
  to: string,
  change: (config: Record<string, unknown>) => Record<string, unknown>,
): Promise<void> {
  const { config } = parse(await readFile(join(repoRoot, "stacks", from), "utf8")) as {
    config: Record<string, unknown>;
  };
  await writeFile(join(project.dir, "stacks", to), stringify({ config: change(config) }));
}

/** A shard stack file derived from alice's (same forks and quota), for another owner. */
async function writeShardStack(
  project: Project,
  owner: string,
  forkImage: string,
  extra: object = {},
): Promise<void> {
  await writeStack(
    project,
    "Pulumi.shard-alice.yaml",
    `Pulumi.shard-${owner.replace(/[^a-z0-9-]/g, "")}.yaml`,
    (config) => ({
      ...withForkImage(config, forkImage),
      "shardworks:owner": owner,
      ...extra,
    }),
  );
}

/** Alice's config with the image of the checkout fork replaced. */
function withForkImage(config: Record<string, unknown>, image: string): Record<string, unknown> {
  const forks = z
    .record(z.string(), z.record(z.string(), z.unknown()))
    .parse(config["shardworks:forks"]);
  return { ...config, "shardworks:forks": { ...forks, checkout: { ...forks.checkout, image } } };
}

test("our program through the real engine, provider and language host: platform-local and shard stacks on a cluster that runs pods, forks Ready when up returns, a bad image fails naming the fork, RBAC, clean preview, bad config, destroy leaves nothing", async (t) => {
  const tools = await ensureTools();
  // The fork images: the testbed's test HTTP server, in the local registry, pinned by digest.
  const image = await ensureTestHttpImage({ progress: (line) => t.log(line) });
  t.log(`fork image: ${image.ref} (also ${image.tagged})`);

  const name = `e2e-shard-${process.pid}`;
  t.teardown(() => stopCluster(name, { purge: true, log: () => undefined }));
  const cluster: Cluster = await startCluster(name, { log: (line) => t.log(line) });
  const admin = new k8s.KubeConfig();
  admin.loadFromFile(cluster.kubeconfigPath);
  const core = admin.makeApiClient(k8s.CoreV1Api);
  const before = await ourObjects(admin);

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
  // The program and the packages it needs, by symlink (modules resolve to the repo's real paths;
  // ts-node compiles with the repo's tsconfig.json).
  for (const entry of ["index.ts", "package.json", "node_modules", "tsconfig.json"]) {
    await symlink(join(repoRoot, entry), join(project.dir, entry));
  }
  // The baseline services run the test image (by digest); alice's checkout fork runs it by tag
  // (a different reference, so "the fork's image" and "the baseline's image" stay apart).
  const baselineImage = image.ref;
  const forkImage = image.tagged;
  await writeStack(project, "Pulumi.platform-local.yaml", "Pulumi.platform-local.yaml", (c) => {
    const baseline = z
      .record(z.string(), z.object({ port: z.number() }).loose())
      .parse(c["shardworks:baseline"]);
    return {
      ...c,
      "shardworks:baseline": Object.fromEntries(
        Object.entries(baseline).map(([svc, b]) => [svc, { ...b, image: baselineImage }]),
      ),
    };
  });
  await writeStack(project, "Pulumi.shard-alice.yaml", "Pulumi.shard-alice.yaml", (c) =>
    withForkImage(c, forkImage),
  );
  // The runtime API the shards register with (ShardRegistration): a real scheduler on a real
  // etcd, run here as local processes (the platform's own runtime pods need the runtime image),
  // reached through the documented `shardworks:runtimeApiUrl` override; its token is the
  // platform stack's.
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
  await writeShardStack(project, "bob", forkImage, { "shardworks:runtimeApiUrl": scheduler.url });
  let output = "";
  const log = (out: string) => {
    output += out;
    t.log(out.trimEnd());
  };
  // The CLI on the project directory, as a user runs it.
  const cli = (args: string[]) =>
    execFileAsync(tools.pulumi, [...args, "--non-interactive", "--cwd", project.dir], {
      env: { ...process.env, ...project.envVars },
      maxBuffer: 64 * 1024 * 1024,
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
  assertRealPlugins(t, tools, output);

  // Alice's shard, then bob's.
  const alice = await stackOf(project, "shard-alice");
  await alice.setConfig("shardworks:runtimeApiUrl", { value: scheduler.url });
  const shardStarted = Date.now();
  const aliceUp = await alice.up({ onOutput: log });
  const shardSeconds = (Date.now() - shardStarted) / 1000;
  t.log(`pulumi up shard-alice: ${shardSeconds.toFixed(1)} s`);
  t.is(aliceUp.summary.result, "succeeded");
  t.is(aliceUp.outputs.shardNamespace?.value, "shard-alice");
  // up returned: the forks' pods are Ready now (the provider awaited them), not eventually.
  for (const [fork, expected] of [
    ["checkout", forkImage],
    ["payments", baselineImage],
  ] as const) {
    t.deepEqual(
      await forkPods(core, "shard-alice", fork),
      [{ image: expected, ready: true }],
      fork,
    );
  }
  const ofAlice = await objectsOfShard(admin, "alice");
  t.log(`objects of shard alice (${ofAlice.kinds} kinds listed):\n${ofAlice.objects.join("\n")}`);
  for (const expected of [
    "v1 Namespace shard-alice",
    "apps/v1 Deployment shard-alice/checkout",
    "v1 ResourceQuota shard-alice/shard-quota",
  ]) {
    t.true(ofAlice.objects.includes(expected), `the inventory finds ${expected}`);
  }
  t.true(ofAlice.objects.some((o) => o.startsWith("v1 Pod shard-alice/checkout-")));
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
  t.is(container?.image, forkImage);
  t.deepEqual(plain(container?.env), [{ name: "FEATURE_NEW_CART", value: "true" }]);
  const payments = await apps.readNamespacedDeployment({
    namespace: "shard-alice",
    name: "payments",
  });
  // A fork with only env keeps the baseline image.
  t.is(payments.spec?.template.spec?.containers[0]?.image, baselineImage);
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
  await writeShardStack(project, "mallory", forkImage, {
    "shardworks:owner": "mal lory",
    "shardworks:name": "mallory",
  });
  await cli(["stack", "init", "shard-mallory"]);
  const badPreview = await cli(["preview", "--stack", "shard-mallory"]);
  t.log(`bad config, pulumi preview:\n${badPreview.output}`);
  t.false(badPreview.ok, "preview of a bad config must fail");
  t.regex(badPreview.output, /shardworks:owner: must not contain spaces/);
  t.notRegex(badPreview.output, /at \S+\.ts:\d+/, "no stack trace for a config error");
  const badUp = await cli(["up", "--yes", "--stack", "shard-mallory"]);
  t.false(badUp.ok, "up of a bad config must fail");
  t.regex(badUp.output, /shardworks:owner: must not contain spaces/);
  // Nothing of mallory's anywhere (the platform's own pods and events churn meanwhile).
  t.deepEqual((await objectsOfShard(admin, "mallory")).objects, []);
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

  // A fork whose image cannot be pulled: `pulumi up` fails when the readiness timeout passes,
  // naming the fork and why its pod is not Ready.
  const missing = `${forkImage.slice(0, forkImage.lastIndexOf("/"))}/no-such-image:1`;
  await writeShardStack(project, "erin", missing, {
    "shardworks:runtimeApiUrl": scheduler.url,
    "shardworks:readyTimeout": "30s",
  });
  await cli(["stack", "init", "shard-erin"]);
  const erinStarted = Date.now();
  const erinUp = await cli(["up", "--yes", "--stack", "shard-erin"]);
  t.log(
    `bad image, pulumi up (${((Date.now() - erinStarted) / 1000).toFixed(1)} s):\n${erinUp.output}`,
  );
  t.false(erinUp.ok, "up of a shard whose fork cannot run must fail");
  const failure = erinUp.output.slice(erinUp.output.lastIndexOf("Diagnostics:"));
  t.regex(failure, /shard-erin-fork-checkout/, "the error names the fork");
  t.regex(failure, /ErrImagePull|ImagePullBackOff/, "the error gives the reason");
  t.regex(failure, /no-such-image/);
  t.notRegex(failure, /\n\s+at .*\(.*:\d+:\d+\)/, "no stack trace");
  const erinDestroyed = await cli(["destroy", "--yes", "--stack", "shard-erin"]);
  t.true(erinDestroyed.ok, `pulumi destroy of shard-erin:\n${erinDestroyed.output}`);

  // destroy: the shards, then the platform; nothing of ours is left.
  const bobDestroyed = await cli(["destroy", "--yes", "--stack", "shard-bob"]);
  t.true(bobDestroyed.ok, `pulumi destroy of shard-bob:\n${bobDestroyed.output}`);
  t.is(await statusOf(() => core.readNamespace({ name: "shard-bob" })), 404);
  for (const stack of [alice, platform]) {
    const destroyed = await stack.destroy({ onOutput: log });
    t.is(destroyed.summary.result, "succeeded");
  }
  t.is(await statusOf(() => core.readNamespace({ name: "shard-alice" })), 404);
  for (const shard of ["alice", "bob", "erin", "mallory"]) {
    const left = await objectsOfShard(admin, shard);
    t.true(left.kinds > 40, `every served kind was listed (${left.kinds})`);
    t.deepEqual(left.objects, [], `destroy leaves zero objects of shard ${shard}`);
  }
  // The platform keeps skipAwait (its runtime images are not in the local registry), so the
  // provider does not wait for its namespaces to be finalized: they go shortly after destroy.
  let ours = await ourObjects(admin);
  for (let i = 0; i < 120 && JSON.stringify(ours) !== JSON.stringify(before); i++) {
    await new Promise((r) => setTimeout(r, 500));
    ours = await ourObjects(admin);
  }
  t.deepEqual(ours, before, "destroy must leave nothing of ours behind (within 60 s)");
  t.is(await shardApi("alice"), 404, "pulumi destroy deregistered alice's shard");
  t.is(await shardApi("bob"), 404, "pulumi destroy deregistered bob's shard");
  for (const stack of [
    "shard-erin",
    "shard-mallory",
    "shard-bob",
    "shard-alice",
    "platform-local",
  ]) {
    await platform.workspace.removeStack(stack);
  }
  t.log(`RESULT pulumi up shard-alice (Automation API): ${shardSeconds.toFixed(1)} s`);
  t.log(`RESULT pulumi up shard-bob (CLI): ${bobSeconds.toFixed(1)} s`);
});
