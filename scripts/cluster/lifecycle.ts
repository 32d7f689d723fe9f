/** Start, stop and inspect one local cluster (see `scripts/cluster.ts` and ADR 0011). */
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { freePort } from "../../runtime/lib/ports";
import { ensurePauseImage } from "../images/catalog";
import { ensureRegistry } from "../registry";
import { ensureTools, KUBERNETES_BINARIES, toolsBinDir } from "../tools";
import { clusterRequest, type ApiTarget } from "./api";
import { ensureCgroup, removeCgroup, removeEmptyRoot } from "./cgroups";
import { ensureClusterPki } from "./certs";
import { ensureTokens, readState, saveState, type State, Tokens, withClusterLock } from "./state";
import {
  alive,
  clusterCgroup,
  Fatal,
  clusterDir,
  type Log,
  seconds,
  sleep,
  tail,
  waitFor,
} from "./common";
import {
  type ControlPlaneContext,
  startApiserver,
  startControllerManager,
  startEtcd,
  startScheduler,
} from "./control-plane";
import { kubeconfigYaml } from "./kubeconfig";
import { createNodeNetwork, ensureSlot, networkOf, type NodeNetwork, releaseSlot } from "./network";
import { killCgroup, startNode, stopNode } from "./node";
import { nodePaths } from "./node-config";
import { checkHostTools } from "./prerequisites";

/** Options of {@link startCluster}. */
export interface StartClusterOptions {
  /** Token users created besides the admin (no groups, so no rights until RBAC binds them). */
  users?: readonly string[];
  /** Start kube-controller-manager; default true. Without it there is no node either. */
  controllerManager?: boolean;
  /** Start the node (containerd, kubelet, kube-proxy, CoreDNS) and kube-scheduler; default true. */
  node?: boolean;
  /** Progress lines; default stderr. */
  log?: (line: string) => void;
  /** How long to wait for each start-up step (`/readyz`, node Ready, DNS); default 120 s. */
  readyTimeoutMs?: number;
}

/** A running cluster, as {@link startCluster} returns it. */
export interface Cluster {
  readonly name: string;
  readonly dir: string;
  /** `https://127.0.0.1:<port>` */
  readonly server: string;
  readonly etcdEndpoint: string;
  readonly caCert: string;
  /** Admin kubeconfig (user `shardworks-admin` in `system:masters`) and its path. */
  readonly kubeconfig: string;
  readonly kubeconfigPath: string;
  readonly adminToken: string;
  /** Bearer tokens of the test users, by name. */
  readonly userTokens: Readonly<Record<string, string>>;
  /** Path of a kubeconfig for one test user. */
  kubeconfigPathFor(user: string): string;
  /** The node's name (`<cluster>-node`), or undefined for a cluster started with `node: false`. */
  readonly nodeName: string | undefined;
  /**
   * Addresses: the node (`nodeIP`: NodePorts, hostPorts), pod and Service ranges, cluster DNS.
   * The host routes the pod and Service ranges to the node, so tests reach pods and ClusterIPs.
   */
  readonly network: NodeNetwork;
}

/** The users every cluster gets unless told otherwise. */
export const DEFAULT_USERS = ["alice", "bob", "carol"] as const;

function defaultLog(name: string): Log {
  return (line) => process.stderr.write(`cluster ${name}: ${line}\n`);
}

/** kube-router (`SHARDWORKS_KUBE_ROUTER`, or the tools' when they build it), if there is one. */
function kubeRouterBinary(bin: string): string | undefined {
  const path = process.env.SHARDWORKS_KUBE_ROUTER ?? join(bin, "kube-router");
  if (!existsSync(path)) return undefined;
  if (!existsSync("/usr/sbin/ipset")) {
    throw new Error("kube-router needs ipset: run `apt-get install ipset` (Debian package ipset)");
  }
  return path;
}

async function ensureBinaries(log: Log): Promise<{ bin: string; coredns: string }> {
  checkHostTools();
  const bin = toolsBinDir();
  const needed = [...KUBERNETES_BINARIES, "coredns"];
  if (needed.some((b) => !existsSync(join(bin, b)))) {
    log(
      `building ${needed.filter((b) => !existsSync(join(bin, b))).join(", ")} (npm run tools -- kubernetes coredns)`,
    );
    // Only what a cluster needs: the Pulumi tools are not (and may be building elsewhere).
    await ensureTools({ only: ["kubernetes", "coredns"] });
  }
  return { bin, coredns: join(bin, "coredns") };
}

/** Start the control plane (and node); `state` collects pids as they start, for cleanup. */
async function start(
  name: string,
  options: StartClusterOptions,
  log: Log,
  net: NodeNetwork,
  api: Omit<ApiTarget, "server">,
): Promise<State> {
  const dir = clusterDir(name);
  const withNode = (options.node ?? true) && (options.controllerManager ?? true);
  const timeoutMs = options.readyTimeoutMs ?? 120_000;
  const { bin, coredns } = await ensureBinaries(log);
  const registry = withNode ? await ensureRegistry() : undefined;
  const pause = withNode ? await ensurePauseImage({ progress: log }) : undefined;
  const cgroup = clusterCgroup(name);
  ensureCgroup(`${cgroup}/control-plane`);
  if (withNode) {
    ensureCgroup(`${cgroup}/node`);
    createNodeNetwork(net);
    log(`network namespace ${net.netns}: node ${net.nodeIP}, pods ${net.podCIDR}`);
  }
  const started = Date.now();
  const ctx: ControlPlaneContext = {
    name,
    dir,
    pki: join(dir, "pki"),
    logs: join(dir, "logs"),
    net,
    bin,
    cgroup: `${cgroup}/control-plane`,
  };
  const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const etcd = startEtcd(ctx, etcdPort, peerPort);
  const server = `https://127.0.0.1:${apiPort}`;
  const state: State = {
    name,
    server,
    etcdEndpoint: etcd.endpoint,
    apiPort,
    node: withNode,
    pids: { etcd: etcd.pid },
    startedAt: new Date().toISOString(),
  };
  log(`etcd on ${etcd.endpoint} (pid ${etcd.pid})`);
  state.pids.apiserver = startApiserver(ctx, etcd.endpoint, apiPort);
  await saveState(dir, state);
  log(`kube-apiserver on ${server} (pid ${state.pids.apiserver})`);
  const target: ApiTarget = { ...api, server };
  await waitFor({
    what: "kube-apiserver /readyz",
    timeoutMs,
    log,
    check: async () => {
      for (const which of ["etcd", "apiserver"] as const) {
        if (!alive(state.pids[which] ?? 0, ctx.cgroup)) throw new Fatal(`${which} exited`);
      }
      const res = await clusterRequest(target, "GET", "/readyz");
      if (res.status === 200) return true;
      throw new Error(`${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
    },
    failure: async (last) => {
      const which = alive(etcd.pid, ctx.cgroup) ? "kube-apiserver" : "etcd";
      return new Error(
        `kube-apiserver not ready (${last}); last lines of ${which}.log:\n${await tail(join(ctx.logs, `${which}.log`))}`,
      );
    },
  });
  log(`/readyz ok after ${seconds(started)}`);
  const componentKubeconfig = async (component: string): Promise<string> => {
    const path = join(ctx.pki, `${component}.kubeconfig`);
    await writeFile(
      path,
      kubeconfigYaml(name, server, api.caCert, component, {
        cert: join(ctx.pki, `${component}.crt`),
        key: join(ctx.pki, `${component}.key`),
      }),
      { mode: 0o600 },
    );
    return path;
  };
  if (options.controllerManager ?? true) {
    state.pids.controllerManager = startControllerManager(
      ctx,
      await componentKubeconfig("controller-manager"),
    );
    log(`kube-controller-manager (pid ${state.pids.controllerManager})`);
  }
  if (withNode && registry !== undefined && pause !== undefined) {
    state.pids.scheduler = startScheduler(ctx, await componentKubeconfig("scheduler"));
    log(`kube-scheduler (pid ${state.pids.scheduler})`);
    await saveState(dir, state);
    const pids = await startNode({
      name,
      nodeName: `${name}-node`,
      pki: ctx.pki,
      logs: ctx.logs,
      paths: nodePaths(dir),
      net,
      bin,
      coredns,
      kubeRouter: kubeRouterBinary(bin),
      cgroup,
      daemonCgroup: `${cgroup}/node`,
      apiPort,
      api: target,
      sandboxImage: pause.ref,
      registry: { host: registry.host, port: registry.port },
      log,
      timeoutMs,
    });
    Object.assign(state.pids, pids);
  }
  await saveState(dir, state);
  log(`up in ${seconds(started)}`);
  return state;
}

/** Start (or find running) cluster `name`; resolves once it is ready (its node Ready, DNS up). */
export async function startCluster(
  name: string,
  options: StartClusterOptions = {},
): Promise<Cluster> {
  const dir = clusterDir(name);
  const log = options.log ?? defaultLog(name);
  await mkdir(join(dir, "logs"), { recursive: true });
  return withClusterLock(dir, log, () => startLocked(name, dir, log, options));
}

async function startLocked(
  name: string,
  dir: string,
  log: Log,
  options: StartClusterOptions,
): Promise<Cluster> {
  const withNode = (options.node ?? true) && (options.controllerManager ?? true);
  const net = await ensureSlot(name);
  const nodeName = withNode ? `${name}-node` : undefined;
  await ensureClusterPki(join(dir, "pki"), net, `${name}-node`);
  const tokens = await ensureTokens(dir, options.users ?? DEFAULT_USERS);
  const caCert = await readFile(join(dir, "pki", "ca.crt"), "utf8");

  let state = await readState(dir);
  const cgroup = clusterCgroup(name);
  const running =
    state !== undefined &&
    Object.values(state.pids).every((pid) => alive(pid, cgroup)) &&
    (state.node || !withNode);
  if (state !== undefined && running) {
    log(`already running at ${state.server}`);
  } else {
    await stopLocked(name, { log: () => undefined }); // leftovers of a crash or a half start
    try {
      state = await start(name, options, log, net, { caCert, adminToken: tokens.admin });
    } catch (error) {
      await stopLocked(name, { log });
      throw error;
    }
  }
  const kubeconfigPath = join(dir, "kubeconfig");
  await writeFile(
    kubeconfigPath,
    kubeconfigYaml(name, state.server, caCert, "shardworks-admin", { token: tokens.admin }),
    { mode: 0o600 },
  );
  for (const [user, token] of Object.entries(tokens.users)) {
    await writeFile(
      join(dir, `kubeconfig-${user}`),
      kubeconfigYaml(name, state.server, caCert, user, { token }),
      { mode: 0o600 },
    );
  }
  return {
    name,
    dir,
    server: state.server,
    etcdEndpoint: state.etcdEndpoint,
    caCert,
    kubeconfig: await readFile(kubeconfigPath, "utf8"),
    kubeconfigPath,
    adminToken: tokens.admin,
    userTokens: tokens.users,
    kubeconfigPathFor: (user: string) => {
      if (tokens.users[user] === undefined)
        throw new Error(
          `cluster ${name} has no user '${user}'; users: ${Object.keys(tokens.users).join(", ")}`,
        );
      return join(dir, `kubeconfig-${user}`);
    },
    nodeName: state.node ? (nodeName ?? `${name}-node`) : undefined,
    network: net,
  };
}

/**
 * Stop everything cluster `name` runs and remove what it made on the machine (processes, mounts,
 * network namespace, veth, cgroups, etcd data, the node's directory); `purge` also deletes its
 * certificates, tokens and kubeconfigs and frees its network slot.
 */
export async function stopCluster(
  name: string,
  options: { purge?: boolean; log?: (line: string) => void } = {},
): Promise<void> {
  const dir = clusterDir(name);
  if (!existsSync(dir)) {
    (options.log ?? defaultLog(name))("was not running");
    return;
  }
  await withClusterLock(dir, options.log ?? defaultLog(name), () => stopLocked(name, options));
  if (options.purge === true) await rm(dir, { recursive: true, force: true });
}

async function stopLocked(
  name: string,
  options: { purge?: boolean; log?: (line: string) => void },
): Promise<void> {
  const log = options.log ?? defaultLog(name);
  const dir = clusterDir(name);
  const state = await readState(dir);
  const cgroup = clusterCgroup(name);
  const slotFile = join(dir, "network.json");
  const slot = existsSync(slotFile)
    ? z.object({ slot: z.number() }).parse(JSON.parse(await readFile(slotFile, "utf8"))).slot
    : undefined;
  const wasRunning = state !== undefined && alive(state.pids.apiserver ?? 0, cgroup);
  if (slot !== undefined) {
    await stopNode({
      name,
      cgroup,
      daemonCgroup: `${cgroup}/node`,
      paths: nodePaths(dir),
      net: networkOf(name, slot),
      kubelet: state?.pids.kubelet,
      log,
    });
  }
  // Controller manager and scheduler first, etcd last, so nothing logs errors on the way down.
  for (const which of ["controllerManager", "scheduler", "apiserver", "etcd"]) {
    const pid = state?.pids[which];
    if (pid === undefined || !alive(pid, cgroup)) continue;
    process.kill(pid, "SIGTERM");
    for (let i = 0; i < 100 && alive(pid, cgroup); i++) await sleep(100);
  }
  await killCgroup(cgroup, 0);
  const left = removeCgroup(cgroup);
  if (left.length > 0) throw new Error(`could not remove cgroups: ${left.join(", ")}`);
  removeEmptyRoot();
  await rm(join(dir, "state.json"), { force: true });
  await rm(join(dir, "etcd-data"), { recursive: true, force: true });
  if (options.purge === true && slot !== undefined) await releaseSlot(name, slot);
  log(wasRunning ? "stopped" : "was not running");
}

/** One line per cluster: running or not, server URL, kubeconfig. */
export async function clusterStatus(name: string): Promise<{
  name: string;
  running: boolean;
  server?: string;
  ready?: boolean;
  kubeconfig?: string;
}> {
  const dir = clusterDir(name);
  const state = await readState(dir);
  if (state === undefined || !alive(state.pids.apiserver ?? 0, clusterCgroup(name))) {
    return { name, running: false };
  }
  const tokens = Tokens.parse(JSON.parse(await readFile(join(dir, "tokens.json"), "utf8")));
  const target = {
    server: state.server,
    caCert: await readFile(join(dir, "pki", "ca.crt"), "utf8"),
    adminToken: tokens.admin,
  };
  const readyz = await clusterRequest(target, "GET", "/readyz").then(
    (r) => r.status === 200,
    () => false,
  );
  const nodeReady =
    !state.node ||
    (await clusterRequest(target, "GET", `/api/v1/nodes/${name}-node`).then(
      (r) =>
        (
          r.body.status as { conditions?: { type: string; status: string }[] } | undefined
        )?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true,
      () => false,
    ));
  return {
    name,
    running: true,
    server: state.server,
    ready: readyz && nodeReady,
    kubeconfig: join(dir, "kubeconfig"),
  };
}
