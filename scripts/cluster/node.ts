/**
 * A cluster's node (ADR 0011): containerd, the kubelet, kube-proxy and CoreDNS in the node's
 * network namespace (host mount namespace), in the cluster's cgroup, with forwarders on the host's
 * veth address to the API server and the registry, which stay on loopback.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type ApiTarget, clusterRequest, createObject } from "./api";
import { pidsIn } from "./cgroups";
import { alive, daemon, Fatal, type Log, seconds, sh, sleep, tail, waitFor } from "./common";
import { kubeconfigYaml } from "./kubeconfig";
import { deleteNodeNetwork, type NodeNetwork } from "./network";
import {
  cniConflist,
  containerdToml,
  corefile,
  dnsObjects,
  kubeletYaml,
  kubeProxyYaml,
  kubeRouterObjects,
  type NodePaths,
  registryHostsToml,
} from "./node-config";
import {
  otherNodesRunning,
  removeNodeLeftovers,
  removeSharedLeftovers,
  restoreHostSysctls,
  saveHostSysctls,
} from "./host-state";

/** What starting a node needs. */
export interface NodeContext {
  readonly name: string;
  readonly nodeName: string;
  readonly pki: string;
  readonly logs: string;
  readonly paths: NodePaths;
  readonly net: NodeNetwork;
  readonly bin: string;
  readonly coredns: string;
  /** kube-router, when there is one: it enforces NetworkPolicies (its firewall only). */
  readonly kubeRouter: string | undefined;
  /** The cluster's cgroup; the kubelet's pods go to `<cgroup>/kubepods`. */
  readonly cgroup: string;
  /** The cgroup of the node's daemons. */
  readonly daemonCgroup: string;
  readonly apiPort: number;
  readonly api: ApiTarget;
  readonly sandboxImage: string;
  readonly registry: { host: string; port: number };
  readonly log: Log;
  readonly timeoutMs: number;
}

/** Pids of the node's daemons. */
export interface NodePids {
  apiForwarder: number;
  registryForwarder: number;
  containerd: number;
  kubelet: number;
  kubeProxy: number;
  coredns: number;
  kubeRouter?: number;
}

function forwarder(ctx: NodeContext, what: string, port: number): number {
  return daemon({
    binary: "socat",
    args: [`TCP-LISTEN:${port},bind=${ctx.net.hostIP},fork,reuseaddr`, `TCP:127.0.0.1:${port}`],
    log: join(ctx.logs, `forward-${what}.log`),
    cgroup: ctx.daemonCgroup,
  });
}

async function writeConfigs(ctx: NodeContext): Promise<void> {
  const { paths, net } = ctx;
  for (const dir of [paths.root, paths.cniConfDir, paths.podLogs, paths.kubeletRoot]) {
    await mkdir(dir, { recursive: true });
  }
  await writeFile(paths.containerdConfig, containerdToml(paths, ctx.sandboxImage));
  const hosts = join(paths.registryHosts, ctx.registry.host);
  await mkdir(hosts, { recursive: true });
  await writeFile(
    join(hosts, "hosts.toml"),
    registryHostsToml(ctx.registry.host, net, ctx.registry.port),
  );
  const server = `https://${net.hostIP}:${ctx.apiPort}`;
  const certUser = (component: string, stem: string): Promise<void> =>
    writeFile(
      paths.kubeconfig(component),
      kubeconfigYaml(ctx.name, server, ctx.api.caCert, component, {
        cert: join(ctx.pki, `${stem}.crt`),
        key: join(ctx.pki, `${stem}.key`),
      }),
      { mode: 0o600 },
    );
  await certUser("kubelet", "kubelet-client");
  await certUser("kube-proxy", "kube-proxy");
  await certUser("coredns", "coredns");
  await certUser("kube-router", "kube-router");
  await writeFile(paths.kubeletConfig, kubeletYaml(paths, ctx.pki, net, ctx.cgroup));
  await writeFile(paths.kubeProxyConfig, kubeProxyYaml(paths, net, ctx.nodeName));
  await writeFile(paths.corefile, corefile(paths, net, ctx.name));
}

async function failure(
  ctx: NodeContext,
  what: string,
  last: string,
  logs: string[],
): Promise<Error> {
  const tails = await Promise.all(
    logs.map(async (l) => `--- ${l}:\n${await tail(join(ctx.logs, l), 15)}`),
  );
  return new Error(`${what}${last === "" ? "" : ` (${last})`}\n${tails.join("\n")}`);
}

function nodeCondition(body: Record<string, unknown>, type: string): string | undefined {
  const status = body.status as {
    conditions?: { type: string; status: string; message?: string }[];
  };
  const condition = status?.conditions?.find((c) => c.type === type);
  return condition === undefined ? undefined : `${condition.status}: ${condition.message ?? ""}`;
}

/** Start the node; resolves when it is Ready, DNS answers and the default service account exists. */
export async function startNode(ctx: NodeContext): Promise<NodePids> {
  const { paths, net, log } = ctx;
  const started = Date.now();
  await writeConfigs(ctx);
  const apiForwarder = forwarder(ctx, "apiserver", ctx.apiPort);
  const registryForwarder = forwarder(ctx, "registry", ctx.registry.port);
  await saveHostSysctls();
  const inNs = { cgroup: ctx.daemonCgroup, netns: net.netns };
  const containerd = daemon({
    ...inNs,
    binary: "containerd",
    args: ["--config", paths.containerdConfig, "--log-level", "warn"],
    log: join(ctx.logs, "containerd.log"),
  });
  await waitFor({
    what: "containerd",
    timeoutMs: 30_000,
    log,
    check: () => {
      if (!alive(containerd, ctx.daemonCgroup)) throw new Fatal("containerd exited");
      if (!existsSync(paths.containerdSocket)) return Promise.resolve(undefined);
      sh("ctr", ["--address", paths.containerdSocket, "version"]);
      return Promise.resolve(true);
    },
    failure: (last) => failure(ctx, "containerd did not start", last, ["containerd.log"]),
  });
  log(`containerd (pid ${containerd}) in netns ${net.netns}`);
  const kubelet = daemon({
    ...inNs,
    binary: join(ctx.bin, "kubelet"),
    args: [
      `--config=${paths.kubeletConfig}`,
      `--kubeconfig=${paths.kubeconfig("kubelet")}`,
      `--root-dir=${paths.kubeletRoot}`,
      `--cert-dir=${join(paths.kubeletRoot, "pki")}`,
      `--node-ip=${net.nodeIP}`,
      `--hostname-override=${ctx.nodeName}`,
      "--v=1",
    ],
    log: join(ctx.logs, "kubelet.log"),
  });
  log(`kubelet (pid ${kubelet}), node ${ctx.nodeName} at ${net.nodeIP}`);
  // The controller manager gives the registered node its pod range; the bridge uses it.
  const nodePath = `/api/v1/nodes/${ctx.nodeName}`;
  const podCIDR = await waitFor({
    what: `node ${ctx.nodeName} to register`,
    timeoutMs: ctx.timeoutMs,
    log,
    check: async () => {
      if (!alive(kubelet, ctx.daemonCgroup)) throw new Fatal("the kubelet exited");
      const res = await clusterRequest(ctx.api, "GET", nodePath);
      const spec = res.body.spec as { podCIDR?: string } | undefined;
      return res.status === 200 ? spec?.podCIDR : undefined;
    },
    failure: (last) =>
      failure(ctx, `node ${ctx.nodeName} did not register`, last, [
        "kubelet.log",
        "kube-controller-manager.log",
      ]),
  });
  await writeFile(
    join(paths.cniConfDir, "10-shardworks.conflist"),
    cniConflist(ctx.name, paths, podCIDR),
  );
  for (const { collection, object } of dnsObjects(net, ctx.nodeName)) {
    await createObject(ctx.api, collection, object);
  }
  const kubeProxy = daemon({
    ...inNs,
    binary: join(ctx.bin, "kube-proxy"),
    args: [`--config=${paths.kubeProxyConfig}`, "--v=1"],
    log: join(ctx.logs, "kube-proxy.log"),
  });
  const coredns = daemon({
    ...inNs,
    binary: ctx.coredns,
    args: ["-conf", paths.corefile],
    log: join(ctx.logs, "coredns.log"),
  });
  log(`kube-proxy (pid ${kubeProxy}), CoreDNS (pid ${coredns}) on ${net.dnsIP}`);
  let kubeRouter: number | undefined;
  if (ctx.kubeRouter !== undefined) {
    for (const { collection, object } of kubeRouterObjects()) {
      await createObject(ctx.api, collection, object);
    }
    kubeRouter = daemon({
      ...inNs,
      binary: ctx.kubeRouter,
      args: [
        `--kubeconfig=${paths.kubeconfig("kube-router")}`,
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        `--hostname-override=${ctx.nodeName}`,
        "--v=1",
      ],
      log: join(ctx.logs, "kube-router.log"),
    });
    log(`kube-router (pid ${kubeRouter}): NetworkPolicies are enforced`);
  } else {
    log("no kube-router in the tools: NetworkPolicies are not enforced");
  }
  await waitFor({
    what: `node ${ctx.nodeName} to be Ready`,
    timeoutMs: ctx.timeoutMs,
    log,
    check: async () => {
      if (!alive(kubelet, ctx.daemonCgroup)) throw new Fatal("the kubelet exited");
      const res = await clusterRequest(ctx.api, "GET", nodePath);
      const ready = nodeCondition(res.body, "Ready");
      if (ready?.startsWith("True") === true) return true;
      throw new Error(`Ready ${ready ?? "unknown"}`);
    },
    failure: (last) =>
      failure(ctx, `node ${ctx.nodeName} did not become Ready`, last, [
        "kubelet.log",
        "containerd.log",
      ]),
  });
  await waitFor({
    what: "kube-proxy and CoreDNS",
    timeoutMs: ctx.timeoutMs,
    log,
    check: async () => {
      for (const [what, pid] of [
        ["kube-proxy", kubeProxy],
        ["CoreDNS", coredns],
      ] as const) {
        if (!alive(pid, ctx.daemonCgroup)) throw new Fatal(`${what} exited`);
      }
      const proxy = await fetch(`http://${net.nodeIP}:10256/healthz`);
      if (!proxy.ok) throw new Error(`kube-proxy healthz ${proxy.status}`);
      const dns = await fetch(`http://${net.nodeIP}:8181/ready`);
      if (!dns.ok) throw new Error(`CoreDNS ready ${dns.status}: ${await dns.text()}`);
      return true;
    },
    failure: (last) =>
      failure(ctx, "kube-proxy or CoreDNS did not become ready", last, [
        "kube-proxy.log",
        "coredns.log",
      ]),
  });
  await waitFor({
    what: "the default service account",
    timeoutMs: ctx.timeoutMs,
    log,
    check: async () =>
      (await clusterRequest(ctx.api, "GET", "/api/v1/namespaces/default/serviceaccounts/default"))
        .status === 200
        ? true
        : undefined,
    failure: (last) =>
      failure(ctx, "no default service account", last, ["kube-controller-manager.log"]),
  });
  log(
    `node ${ctx.nodeName} Ready (pods ${podCIDR}, Services ${net.serviceCIDR}) in ${seconds(started)}`,
  );
  return {
    apiForwarder,
    registryForwarder,
    containerd,
    kubelet,
    kubeProxy,
    coredns,
    ...(kubeRouter === undefined ? {} : { kubeRouter }),
  };
}

/** Kill every process of cgroup `cgroup` and below (SIGTERM first when `graceMs` > 0). */
export async function killCgroup(cgroup: string, graceMs: number): Promise<number[]> {
  const first = pidsIn(cgroup);
  if (graceMs > 0) {
    for (const pid of first) signal(pid, "SIGTERM");
    const deadline = Date.now() + graceMs;
    while (pidsIn(cgroup).length > 0 && Date.now() < deadline) await sleep(100);
  }
  const seen = new Set(first);
  for (let round = 0; round < 100; round++) {
    const left = pidsIn(cgroup);
    if (left.length === 0) {
      // A killed process leaves cgroup.procs when it exits, but stays in /proc as a zombie
      // until its parent (often init, for a daemon's orphans) reaps it: wait for that too, so
      // `down` returns with no process of the cluster left at all.
      const deadline = Date.now() + 10_000;
      while ([...seen].some((pid) => existsSync(`/proc/${pid}`)) && Date.now() < deadline) {
        await sleep(50);
      }
      return first;
    }
    for (const pid of left) {
      seen.add(pid);
      signal(pid, "SIGKILL");
    }
    await sleep(50);
  }
  throw new Error(`processes of cgroup ${cgroup} survive SIGKILL: ${pidsIn(cgroup).join(", ")}`);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
}

function unescapeMount(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) =>
    String.fromCharCode(parseInt(octal, 8)),
  );
}

/** Mount points at or under `dir` (the host's mount namespace), deepest first. */
export function mountsUnder(dir: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    .map(unescapeMount)
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/**
 * Stop the node: the kubelet first (so it recreates nothing), then every container and daemon in
 * the cluster's cgroup; unmount what is left under the node directory (rootfs overlays, pod
 * network namespaces, volumes), delete it, the network namespace and the veth.
 */
export async function stopNode(options: {
  name: string;
  cgroup: string;
  daemonCgroup: string;
  paths: NodePaths;
  net: NodeNetwork;
  kubelet?: number;
  log: Log;
}): Promise<void> {
  const { paths, net } = options;
  if (options.kubelet !== undefined && alive(options.kubelet, options.daemonCgroup)) {
    signal(options.kubelet, "SIGTERM");
    for (let i = 0; i < 50 && alive(options.kubelet, options.daemonCgroup); i++) await sleep(100);
  }
  await killCgroup(`${options.cgroup}/kubepods`, 0);
  await killCgroup(options.daemonCgroup, 5000);
  for (const mount of mountsUnder(paths.root)) {
    try {
      sh("umount", [mount]);
    } catch {
      sh("umount", ["--lazy", mount]);
    }
  }
  const left = mountsUnder(paths.root);
  if (left.length > 0) {
    // Never delete through a mount: it may show a host directory.
    throw new Error(`still mounted after umount, not deleting ${paths.root}: ${left.join(", ")}`);
  }
  // The CNI plugins cache results per sandbox under /var/lib/cni: note this node's sandboxes.
  const sandboxes = ["containerdRoot", "containerdState"].flatMap((key) => {
    const dir = join(paths[key as "containerdRoot"], "io.containerd.grpc.v1.cri", "sandboxes");
    return existsSync(dir) ? readdirSync(dir) : [];
  });
  await rm(paths.root, { recursive: true, force: true });
  // The node's iptables rules, bridge and pod veths go with its network namespace.
  deleteNodeNetwork(net);
  removeNodeLeftovers(paths.podLogs, sandboxes);
  if (!otherNodesRunning(net.netns)) {
    removeSharedLeftovers();
    await restoreHostSysctls();
  }
}
