/**
 * The rollout end to end on the testbed: our program (`index.ts`) through the real Pulumi engine
 * (`AutomationStackUpdater`) into THREE local clusters (`startCluster` ×3), gated by the real gates
 * the CLI builds from a plan (`rolloutGates`: scheduler `/healthz`, node agents, a synthetic
 * sandbox, and the xDS ACK gate over the routing controller's CSDS), reached at the addresses the
 * plan's `targets` give.
 *
 * The platform stacks keep `skipAwait` (the runtime and Envoy images are not in the testbed's
 * registry), so each cluster's runtime runs as local processes at fixed addresses (a real etcd, scheduler, node agent and routing controller per
 * cluster). The mapping from the version Pulumi deployed to those processes: when a `pulumi up`
 * returns (the real provider would have awaited the Deployment's rollout), the scheduler
 * Deployment's image tag is read from the cluster's API server (what the platform stack really
 * deployed), and the local scheduler and routing controller are restarted with the runtime config
 * of that version. A version ending in `-broken` gets a scheduler whose etcd endpoint is wrong, so
 * `/healthz` answers 503 for real; one ending in `-xds-down` gets no routing controller, so the
 * gateway's xDS client has nothing to ACK. Envoy is not installable here: a real `@grpc/grpc-js-xds` client
 * per cluster stands in for the gateway and must ACK each new controller's configuration.
 */
import test, { type ExecutionContext } from "ava";
import * as k8s from "@kubernetes/client-node";
import { LocalWorkspace } from "@pulumi/pulumi/automation";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parse, stringify } from "yaml";
import { startEtcd, type EtcdServer } from "../../runtime/lib";
import { spawnNodeAgent } from "../../runtime/node-agent/spawn";
import { RoutingController } from "../../runtime/routing/controller";
import { startScheduler, type RunningScheduler } from "../../runtime/scheduler";
import { startCluster, stopCluster, type Cluster } from "../../scripts/cluster";
import { testbedPulumi } from "../../scripts/pulumi-env";
import { ensureTools } from "../../scripts/tools";
import { AutomationStackUpdater } from "../../stacks/rollout";
import { runRollout, type StackUpdater } from "../../stacks/rollout-engine";
import { rolloutGates } from "../../stacks/rollout-gates";
import { parsePlan } from "../../stacks/rollout-plan";
import {
  eventually,
  startBackend,
  startXdsClientProcess,
  type XdsClientProcess,
} from "../helpers/grpc-backends";
import { buildBusyboxImage } from "../helpers/images";

const repoRoot = resolve(__dirname, "..", "..");
const TOKEN = randomBytes(32).toString("base64");
const NAMES = ["a", "b", "c"] as const;
/** Node id of the gateway's stand-in xDS client (Envoy's is `shardworks-gateway`). */
const GATEWAY_STANDIN = "rollout-e2e-gateway";

/** One testbed cluster plus the local processes standing in for its runtime pods. */
interface Site {
  readonly stack: string;
  readonly cluster: Cluster;
  readonly apps: k8s.AppsV1Api;
  readonly etcd: EtcdServer;
  /** 0 until the first start picks a free port; every restart reuses it. */
  schedulerPort: number;
  xdsPort: number;
  readonly baseline: string;
  scheduler?: RunningScheduler;
  routing?: RoutingController;
  runningVersion?: string;
}

/** The version the platform stack deployed: the scheduler Deployment's image tag. */
async function deployedVersion(site: Site): Promise<string> {
  const deployment = await site.apps.readNamespacedDeployment({
    name: "shardworks-scheduler",
    namespace: "shardworks-system",
  });
  const image = deployment.spec?.template.spec?.containers[0]?.image ?? "";
  return image.slice(image.lastIndexOf(":") + 1);
}

/** (Re)start the site's scheduler and routing controller with the config of the deployed version. */
async function syncRuntime(site: Site): Promise<void> {
  const version = await deployedVersion(site);
  if (site.runningVersion === version) return;
  await site.scheduler?.close();
  await site.routing?.close();
  site.scheduler = await startScheduler({
    // The broken version's config points at an etcd that is not there.
    etcdEndpoints: [version.endsWith("-broken") ? "http://127.0.0.1:9" : site.etcd.endpoint],
    platformToken: TOKEN,
    electionTtlSeconds: 2,
    port: site.schedulerPort,
    // As the RuntimeDeployment sets SHARDWORKS_RUNTIME_VERSION: /healthz reports it.
    version,
  });
  site.schedulerPort = Number(new URL(site.scheduler.url).port);
  site.runningVersion = version;
  // The xDS-broken version's routing controller never comes up (as if it crashed on start).
  if (version.endsWith("-xds-down")) {
    site.routing = undefined;
    return;
  }
  site.routing = new RoutingController({
    etcd: site.etcd.client,
    baseline: [{ name: "api", destination: site.baseline }],
    xdsPort: site.xdsPort,
    // Registered as routers/<name> with its version: the scheduler asks it for the xds-acked gate.
    advertise: { name: `routing-${site.stack}`, version },
  });
  site.xdsPort = await site.routing.start();
}

async function setUp(t: ExecutionContext) {
  const tools = await ensureTools();
  const work = await mkdtemp(join(tmpdir(), "shardworks-rollout-e2e-"));
  t.teardown(() => rm(work, { recursive: true, force: true }));
  const image = buildBusyboxImage(join(work, "image"));
  const backend = await startBackend("baseline");
  t.teardown(() => backend.close());
  const sites: Site[] = [];
  // The clusters first, then the runtime etcds: both pick free ports, one after the other.
  const clusters: Cluster[] = [];
  for (const name of NAMES) {
    const clusterName = `e2e-rollout-${name}-${process.pid}`;
    t.teardown(() => stopCluster(clusterName, { purge: true, log: () => undefined }));
    clusters.push(await startCluster(clusterName, { log: () => undefined }));
  }
  for (const [i, name] of NAMES.entries()) {
    const cluster = clusters[i]!;
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cluster.kubeconfigPath);
    const etcd = await startEtcd();
    t.teardown(() => etcd.stop());
    const agent = await spawnNodeAgent({
      name: `node-${name}`,
      etcdEndpoints: [etcd.endpoint],
      driver: "process",
      dataDir: join(work, `agent-${name}`),
      env: { TMPDIR: work },
    });
    t.teardown(() => agent.stop(2000));
    sites.push({
      stack: `platform-local-${name}`,
      cluster,
      apps: kc.makeApiClient(k8s.AppsV1Api),
      etcd,
      schedulerPort: 0,
      xdsPort: 0,
      baseline: backend.address,
    });
  }
  t.teardown(async () => {
    for (const site of sites) {
      await site.scheduler?.close();
      await site.routing?.close();
    }
  });

  const env = await testbedPulumi(tools, sites[0]!.cluster, work, "rollout-e2e-passphrase");
  const dir = join(work, "project");
  await mkdir(join(dir, "stacks"), { recursive: true });
  await copyFile(join(repoRoot, "Pulumi.yaml"), join(dir, "Pulumi.yaml"));
  // The real language host runs `index.ts` there; modules resolve to the repo's real paths and
  // ts-node compiles with the repo's tsconfig.json.
  for (const entry of ["index.ts", "package.json", "node_modules", "tsconfig.json"]) {
    await symlink(join(repoRoot, entry), join(dir, entry));
  }
  const opts = { workDir: dir, envVars: env.envVars, pulumiCommand: env.pulumiCommand };
  for (const site of sites) {
    const file = `Pulumi.${site.stack}.yaml`;
    const yaml = parse(await readFile(join(repoRoot, "stacks", file), "utf8")) as {
      config: Record<string, unknown>;
    };
    yaml.config["shardworks:kubeconfig"] = site.cluster.kubeconfigPath;
    await writeFile(join(dir, "stacks", file), stringify(yaml));
    const stack = await LocalWorkspace.createStack({ stackName: site.stack, workDir: dir }, opts);
    await stack.setConfig("shardworks:platformToken", { value: TOKEN, secret: true });
    const up = await stack.up();
    t.is(up.summary.result, "succeeded");
    await syncRuntime(site);
  }
  t.log(
    `LOUD: Envoy is not installable here; on each cluster a real @grpc/grpc-js-xds client (node id "${GATEWAY_STANDIN}") stands in for the gateway, and the xds-acked gate waits for it`,
  );
  const gateways: XdsClientProcess[] = [];
  for (const site of sites) {
    const gateway = startXdsClientProcess(`127.0.0.1:${site.xdsPort}`, GATEWAY_STANDIN);
    t.teardown(() => gateway.close());
    t.is(await eventually(() => gateway.who("xds:///api"), "baseline"), "baseline");
    gateways.push(gateway);
  }
  const automation = new AutomationStackUpdater({
    workDir: dir,
    envVars: env.envVars,
    pulumiCommand: env.pulumiCommand,
  });
  const byStack = new Map(sites.map((s) => [s.stack, s]));
  // What the real provider's await and the kubelet would do: `up` returns with the new version running.
  const updater: StackUpdater = {
    currentRelease: (stack) => automation.currentRelease(stack),
    deploy: async (stack, release, signal) => {
      await automation.deploy(stack, release, signal);
      await syncRuntime(byStack.get(stack)!);
    },
  };
  const plan = (state: string) =>
    parsePlan({
      waves: [
        { name: "canary", stacks: ["platform-local-a"] },
        { name: "rest", stacks: ["platform-local-b", "platform-local-c"] },
      ],
      gates: {
        timeout: "20s",
        interval: "1s",
        syntheticSandboxSlo: "20s",
        xdsNodeId: GATEWAY_STANDIN,
      },
      bake: "2s",
      state: join(work, state),
      targets: Object.fromEntries(
        sites.map((site) => [
          site.stack,
          // The xDS client count comes from the stack's output gatewayReplicas (1 here).
          { schedulerUrl: `http://127.0.0.1:${site.schedulerPort}` },
        ]),
      ),
    });
  // The CLI's gates: the plan's targets, then the stacks' outputs (never read here).
  const gates = rolloutGates(plan("unused.json"), {
    token: TOKEN,
    outputs: automation,
    syntheticSandbox: { image, command: ["true"] },
  });
  const updates = async (stack: string) =>
    (
      await (await LocalWorkspace.selectStack({ stackName: stack, workDir: dir }, opts)).history()
    ).filter((u) => u.kind === "update").length;
  return {
    sites,
    updater,
    automation,
    gates,
    plan,
    updates,
    dir,
    work,
    envVars: env.envVars,
    opts,
  };
}

test("three local clusters: good version everywhere, broken versions (scheduler, xDS) stopped at the canary and rolled back, interrupted rollout resumed", async (t) => {
  const { sites, updater, automation, gates, plan, updates, dir, work, envVars, opts } =
    await setUp(t);
  const versions = () => Promise.all(sites.map((s) => deployedVersion(s)));
  t.deepEqual(await versions(), ["0.1.0", "0.1.0", "0.1.0"]);
  t.deepEqual(
    gates.map((g) => g.name),
    ["scheduler-healthz", "node-agents-registered", "synthetic-sandbox", "xds-acked"],
  );
  // What the gates read from the platform stacks: the gateway's replicas (one stand-in each).
  t.is(await automation.gatewayReplicas("platform-local-a"), 1);
  const log = (line: string) => t.log(line);

  const good = await runRollout({
    plan: plan("good.json"),
    release: { version: "0.2.0" },
    updater,
    gates,
    progress: log,
  });
  t.is(good.status, "succeeded");
  t.deepEqual(await versions(), ["0.2.0", "0.2.0", "0.2.0"]);
  for (const site of sites) t.is(site.runningVersion, "0.2.0");

  const before = await Promise.all(sites.map((s) => updates(s.stack)));
  const broken = await runRollout({
    plan: plan("broken.json"),
    release: { version: "0.0.0-broken" },
    updater,
    gates,
    progress: log,
  });
  t.is(broken.status, "failed");
  t.regex(
    broken.failure ?? "",
    /^wave "canary": platform-local-a: gate scheduler-healthz did not pass within 20s: GET \/healthz: 503/,
  );
  t.deepEqual(await versions(), ["0.2.0", "0.2.0", "0.2.0"]);
  const after = await Promise.all(sites.map((s) => updates(s.stack)));
  t.deepEqual(after, [before[0]! + 2, before[1], before[2]]);

  const xdsDown = await runRollout({
    plan: plan("xds-down.json"),
    release: { version: "0.0.0-xds-down" },
    updater,
    gates,
    progress: log,
  });
  t.is(xdsDown.status, "failed");
  t.regex(
    xdsDown.failure ?? "",
    /^wave "canary": platform-local-a: gate xds-acked did not pass within 20s: no routing controller is registered with the scheduler/,
  );
  t.deepEqual(await versions(), ["0.2.0", "0.2.0", "0.2.0"]);
  t.deepEqual(await Promise.all(sites.map((s) => updates(s.stack))), [
    after[0]! + 2,
    after[1],
    after[2],
  ]);
  t.is(sites[0]!.runningVersion, "0.2.0", "the canary runs the version it had again");

  const abort = new AbortController();
  const first = await runRollout({
    plan: plan("resume.json"),
    release: { version: "0.3.0" },
    updater,
    gates,
    signal: abort.signal,
    progress: (line) => {
      log(line);
      if (line.startsWith("[rest] platform-local-b: updated")) abort.abort();
    },
  });
  t.is(first.status, "interrupted");
  t.deepEqual(await versions(), ["0.3.0", "0.3.0", "0.2.0"]);
  const resumed = await runRollout({
    plan: plan("resume.json"),
    release: { version: "0.3.0" },
    updater,
    gates,
    resume: true,
    progress: log,
  });
  t.is(resumed.status, "succeeded");
  t.deepEqual(await versions(), ["0.3.0", "0.3.0", "0.3.0"]);
  t.deepEqual(await Promise.all(sites.map((s) => updates(s.stack))), [
    after[0]! + 3,
    after[1]! + 1,
    after[2]! + 1,
  ]);

  // The CLI itself, on the same stacks: --dry-run reads every stack's version and shows the
  // targets; a stack that does not exist stops it before anything changes.
  // Not spawnSync: the schedulers the CLI calls run in this process and must keep answering.
  const cli = async (file: string, text: string, extra: string[]) => {
    await writeFile(join(work, file), text);
    const args = [
      "--import",
      "tsx",
      join(repoRoot, "stacks", "rollout.ts"),
      ...["--plan", join(work, file), "--version", "0.4.0", "--work-dir", dir],
      ...extra,
    ];
    return new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        args,
        { cwd: repoRoot, env: { ...process.env, ...envVars }, timeout: 120_000 },
        (error, stdout, stderr) =>
          resolve({
            status: error ? (typeof error.code === "number" ? error.code : null) : 0,
            stdout,
            stderr,
          }),
      );
    });
  };
  const targets = stringify({
    targets: Object.fromEntries(
      sites.map((s) => [s.stack, { schedulerUrl: `http://127.0.0.1:${s.schedulerPort}` }]),
    ),
  });
  const dry = await cli(
    "cli.yaml",
    `waves:\n  - stacks: [platform-local-a]\n  - stacks: [platform-local-b, platform-local-c]\nstate: cli.json\n${targets}`,
    ["--dry-run"],
  );
  t.is(dry.status, 0, dry.stderr);
  for (const site of sites) {
    t.true(
      dry.stdout.includes(
        `    ${site.stack}: 0.3.0 -> 0.4.0 (scheduler http://127.0.0.1:${site.schedulerPort}, 1 node agent(s), gatewayReplicas xDS client(s))`,
      ),
      dry.stdout,
    );
  }
  const missing = await cli(
    "missing.yaml",
    "waves:\n  - stacks: [platform-local-a, platform-local-x]\nstate: missing.json\n",
    ["--platform-token", TOKEN],
  );
  t.is(missing.status, 2);
  t.regex(
    missing.stderr,
    /^stack platform-local-x: error: no stack named 'platform-local-x' found/m,
  );
  // A wrong platform token: refused before the canary is touched (every gate would get 401).
  const wrongToken = await cli(
    "wrong-token.yaml",
    `waves:\n  - stacks: [platform-local-a]\n  - stacks: [platform-local-b, platform-local-c]\nstate: wrong-token.json\n${targets}`,
    ["--platform-token", "not-the-platform-token-0123456789abcdef"],
  );
  t.is(wrongToken.status, 2, wrongToken.stderr);
  t.regex(
    wrongToken.stderr,
    /^stack platform-local-a: the scheduler API at http:\/\/127\.0\.0\.1:\d+ refuses the platform token \(401\)/m,
  );
  // Without targets the gates would ask the in-cluster address, which does not answer here:
  // refused before the canary is touched.
  const unreachable = await cli(
    "unreachable.yaml",
    "waves:\n  - stacks: [platform-local-a]\nstate: unreachable.json\n",
    ["--platform-token", TOKEN],
  );
  t.is(unreachable.status, 2, unreachable.stderr);
  t.regex(
    unreachable.stderr,
    /^stack platform-local-a: the scheduler API at http:\/\/shardworks-scheduler\.shardworks-system\.svc\.cluster\.local:8080 does not answer \((ENOTFOUND|EAI_AGAIN)\); set targets\.platform-local-a\.schedulerUrl/m,
  );
  // A stack that pins the runtime image (one that runs pods) is refused without --image: a new
  // version alone would keep running the old image. --dry-run with --image shows both.
  const pinnedImage = `ghcr.io/shardworks/runtime@sha256:${"a".repeat(64)}`;
  const nextImage = `ghcr.io/shardworks/runtime@sha256:${"b".repeat(64)}`;
  const pinned = await LocalWorkspace.selectStack(
    { stackName: "platform-local-a", workDir: dir },
    opts,
  );
  await pinned.setConfig("shardworks:runtime.image", { value: pinnedImage }, true);
  const releasePlan = `waves:\n  - stacks: [platform-local-a]\n  - stacks: [platform-local-b, platform-local-c]\nstate: release.json\n${targets}`;
  const noImage = await cli("no-image.yaml", releasePlan, ["--platform-token", TOKEN]);
  const dryImage = await cli("dry-image.yaml", releasePlan, ["--dry-run", "--image", nextImage]);
  await pinned.removeConfig("shardworks:runtime.image", true);
  t.is(noImage.status, 2, noImage.stderr);
  t.regex(
    noImage.stderr,
    /^stack platform-local-a pins the runtime image \(ghcr\.io\/shardworks\/runtime@sha256:a{64}\), so a new version alone would keep running it; pass --image /m,
  );
  t.notRegex(noImage.stderr, /platform-local-[bc]/, "only the pinned stack is named");
  t.is(dryImage.status, 0, dryImage.stderr);
  t.true(
    dryImage.stdout.includes(
      `    platform-local-a: 0.3.0 (ghcr.io/shardworks/runtime@sha256:aaaaaaaaaaaa…) -> 0.4.0 (ghcr.io/shardworks/runtime@sha256:bbbbbbbbbbbb…) (scheduler http://127.0.0.1:${sites[0]!.schedulerPort}, 1 node agent(s), gatewayReplicas xDS client(s))`,
    ),
    dryImage.stdout,
  );
  t.deepEqual(await versions(), ["0.3.0", "0.3.0", "0.3.0"], "nothing was deployed");
});
