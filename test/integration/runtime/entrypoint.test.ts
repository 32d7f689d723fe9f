/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument --
   Recorded resource inputs are untyped JSON. */
/**
 * The RuntimeDeployment and the runtime image must agree: this reads the args, env, ports and
 * probes the component emits (recording mock) and starts each runtime process
 * (`runtime/main.ts <role>`) with exactly those, against a real etcd on loopback, then checks it
 * becomes healthy through the probe the component configured. A renamed env var, a changed port
 * or a probe the process does not answer fails here.
 *
 * What Kubernetes would supply is stood in for: `spec.nodeName` = "node-a", `status.podIP` =
 * 127.0.0.1, `metadata.name` = "shardworks-routing-7d9f", Secrets by their `stringData`, hostPath
 * mounts by a temp dir; `$(VAR)` in a value expands from variables defined before it, as the
 * kubelet does.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import { Env, NodeAgentDriver, Ports, RuntimeDeployment } from "../../../components";
import { startEtcd, type EtcdServer } from "../../../runtime/lib/etcd-server";
import { podSpecOf } from "../../unit/helpers/k8s-schema";
import { installMocks, named, recorded, settled } from "../../unit/helpers/pulumi";

const ROOT = join(__dirname, "../../..");
const TOKEN = "entrypoint-platform-token-0123456789abcdef";
const NODE_NAME = "node-a";
const POD_IP = "127.0.0.1";
const POD_NAME = "shardworks-routing-7d9f";

let etcd: EtcdServer;
let dataRoot: string;

test.before(async () => {
  await installMocks();
  etcd = await startEtcd();
  dataRoot = await mkdtemp(join(tmpdir(), "shardworks-entrypoint-"));
  const runtime = new RuntimeDeployment("rt", {
    version: "0.1.0",
    imageRepository: "ghcr.io/shardworks/runtime",
    platformToken: TOKEN,
    gatewayNamespace: "shardworks-gateway",
    etcdEndpoints: [etcd.endpoint],
    // Firecracker cannot run on this machine (no binary, no working KVM); bubblewrap can.
    nodeAgentDriver: NodeAgentDriver.Process,
    baselineServices: {
      checkout: { image: "ghcr.io/acme/checkout:main", port: 8080, namespace: "shop" },
    },
    skipAwait: true,
  });
  await settled(runtime.namespace, runtime.schedulerUrl);
  // Env values that are Outputs (the baseline JSON) settle after the resource is registered.
  for (let i = 0; i < 100 && !recorded.some((r) => r.name === "rt-routing"); i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});

test.after.always(async () => {
  await etcd?.stop();
  if (dataRoot) await rm(dataRoot, { recursive: true, force: true });
});

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    secretKeyRef?: { name: string; key: string };
    fieldRef?: { fieldPath: string };
  };
}

/** The container's env as the kubelet would give it to the process. */
function resolveEnv(container: any, mounts: Map<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const v of container.env as EnvVar[]) {
    if (v.value !== undefined) {
      const expanded = v.value.replace(
        /\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g,
        (all, name: string) => env[name] ?? all,
      );
      env[v.name] = mounts.get(expanded) ?? expanded;
    } else if (v.valueFrom?.secretKeyRef) {
      const { name, key } = v.valueFrom.secretKeyRef;
      const secret = recorded.find(
        (r) => r.type === "kubernetes:core/v1:Secret" && r.inputs["metadata"].name === name,
      );
      if (secret === undefined) throw new Error(`${v.name}: no Secret ${name} is created`);
      env[v.name] = String(secret.inputs["stringData"][key]);
    } else if (v.valueFrom?.fieldRef) {
      const path = v.valueFrom.fieldRef.fieldPath;
      const field: Record<string, string> = {
        "spec.nodeName": NODE_NAME,
        "status.podIP": POD_IP,
        "metadata.name": POD_NAME,
      };
      if (field[path] === undefined) throw new Error(`${v.name}: no stand-in for ${path}`);
      env[v.name] = field[path];
    } else {
      throw new Error(`${v.name}: neither a value nor a supported valueFrom`);
    }
  }
  return env;
}

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "0.0.0.0", () => server.close(() => resolve(true)));
  });
}

/** Start `runtime/main.ts` as the container would; stopped (and killed if need be) at teardown. */
function startContainer(
  t: { teardown(fn: () => Promise<void>): void },
  container: any,
  env: Record<string, string>,
): { child: ChildProcess; output: () => string } {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("SHARDWORKS_")),
  );
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(ROOT, "runtime/main.ts"), ...(container.args as string[])],
    {
      cwd: ROOT,
      env: { ...inherited, SHARDWORKS_LOG_LEVEL: "warn", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  });
  return { child, output: () => output };
}

/** Poll the container's readiness probe until it passes; throws with the process output if not. */
async function waitReady(
  container: any,
  running: { child: ChildProcess; output: () => string },
): Promise<string> {
  const probe = container.readinessProbe;
  const deadline = Date.now() + 60_000;
  let last = "not tried";
  while (Date.now() < deadline) {
    if (running.child.exitCode !== null) {
      throw new Error(`exited with ${running.child.exitCode}:\n${running.output()}`);
    }
    try {
      if (probe.httpGet) {
        const response = await fetch(`http://${POD_IP}:${probe.httpGet.port}${probe.httpGet.path}`);
        last = `HTTP ${response.status}`;
        if (response.status === 200) return last;
      } else if (probe.grpc) {
        last = await grpcHealth(probe.grpc.port, probe.grpc.service ?? "");
        if (last === "SERVING") return last;
      } else {
        throw new Error(`unsupported probe ${JSON.stringify(probe)}`);
      }
    } catch (error) {
      last = String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  throw new Error(`never ready (last: ${last}):\n${running.output()}`);
}

async function grpcHealth(port: number, service: string): Promise<string> {
  const Health = grpc.makeGenericClientConstructor(healthService, "Health");
  const client = new Health(`${POD_IP}:${port}`, grpc.credentials.createInsecure()) as unknown as {
    Check(req: { service: string }, cb: (e: Error | null, r?: { status: string }) => void): void;
    close(): void;
  };
  try {
    return await new Promise<string>((resolve, reject) =>
      client.Check({ service }, (e, r) => (e ? reject(e) : resolve(String(r?.status)))),
    );
  } finally {
    client.close();
  }
}

/** The one container of a workload, with its hostPath mounts mapped to temp dirs. */
function containerOf(workload: string): { container: any; mounts: Map<string, string> } {
  const pod = podSpecOf(named(workload).inputs)!;
  const container = pod.containers[0];
  const mounts = new Map<string, string>();
  for (const m of (container.volumeMounts ?? []) as { name: string; mountPath: string }[]) {
    const volume = pod.volumes?.find((v: { name: string }) => v.name === m.name);
    if (volume?.hostPath?.type === "DirectoryOrCreate") {
      mounts.set(m.mountPath, join(dataRoot, m.name));
    }
  }
  return { container, mounts };
}

const roles = [
  { workload: "rt-scheduler", role: "scheduler", port: Ports.schedulerApi },
  { workload: "rt-node-agent", role: "node-agent", port: Ports.nodeAgent },
  { workload: "rt-routing", role: "routing-controller", port: Ports.xds },
] as const;

for (const { workload, role, port } of roles) {
  test.serial(
    `${role}: starts from the component's args and env and passes its probe`,
    async (t) => {
      const { container, mounts } = containerOf(workload);
      t.deepEqual(container.args, [role]);
      t.is(container.ports[0].containerPort, port);
      const probePort =
        container.readinessProbe.httpGet?.port ?? container.readinessProbe.grpc?.port;
      t.is(probePort, port, "the probe asks the port the process listens on");
      if (!(await portIsFree(port))) {
        t.fail(`port ${port} is in use on this machine; this test needs it (the component's port)`);
        return;
      }
      const env = resolveEnv(container, mounts);
      const running = startContainer(t, container, env);
      t.is(
        await waitReady(container, running),
        role === "routing-controller" ? "SERVING" : "HTTP 200",
      );
    },
  );
}

test.serial("all three together: the node agent registers with the scheduler's etcd", async (t) => {
  const started = roles.map(({ workload }) => {
    const { container, mounts } = containerOf(workload);
    return { container, running: startContainer(t, container, resolveEnv(container, mounts)) };
  });
  for (const { container, running } of started) await waitReady(container, running);
  const nodes = await fetch(`http://${POD_IP}:${Ports.schedulerApi}/v1/nodes`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  t.is(nodes.status, 200, "the scheduler got the platform token from the Secret");
  t.regex(await nodes.text(), new RegExp(`"${NODE_NAME}"`), "the node agent registered its name");
  // The version every process reports, and the routing replica the scheduler can ask.
  const health = (await (await fetch(`http://${POD_IP}:${Ports.schedulerApi}/healthz`)).json()) as {
    version?: string;
  };
  t.is(health.version, "0.1.0", "the scheduler reports the image tag");
  const xds = (await (
    await fetch(`http://${POD_IP}:${Ports.schedulerApi}/v1/xds/clients`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    })
  ).json()) as { routers: { name: string; address: string; version?: string; clients?: [] }[] };
  t.deepEqual(
    xds.routers.map((r) => [r.name, r.address, r.version, r.clients?.length]),
    [[POD_NAME, `${POD_IP}:${Ports.xds}`, "0.1.0", 0]],
    "the routing replica registered under its pod name at its pod IP, and answers CSDS",
  );
  // The node agent's API demands the agent token; the scheduler has the same one.
  const agentApi = await fetch(`http://${POD_IP}:${Ports.nodeAgent}/v1/sandboxes/x/logs`);
  t.is(agentApi.status, 401, "the agent API is not open");
  const routingEnv = resolveEnv(containerOf("rt-routing").container, new Map());
  t.deepEqual(JSON.parse(routingEnv[Env.baselineServices]!), [
    { name: "checkout", destination: "checkout.shop.svc.cluster.local:8080" },
  ]);
});
