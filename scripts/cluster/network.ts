/**
 * The network of a cluster (ADR 0011): a slot `s` (0-99) per cluster picks the block
 * `10.(100+s).0.0/16`, which holds everything of the cluster, so two clusters never share an
 * address, a route or a bridge:
 *
 * - `10.B.0.0/30`: a veth pair between the host (`sw<s>`, `.1`) and the node's network namespace
 *   `shardworks-<name>` (`eth0`, `.2`): the kubelet, containerd, kube-proxy, CoreDNS and every pod
 *   live there, with the node's own iptables rules;
 * - `10.B.16.0/20`: Services (`.16.1` the API server, `.16.10` cluster DNS);
 * - `10.B.128.0/17`: pods (the node gets a `/24` of it from the controller manager).
 *
 * The host routes the pod and Service ranges into the namespace, so tests on the host reach pods
 * and Services directly. The host does not forward: nothing from a pod goes past the host.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { clusterDir, clustersRoot, sh } from "./common";

/** Addresses and names of one cluster's node network. */
export interface NodeNetwork {
  readonly slot: number;
  /** Network namespace of the node: `/run/netns/<netns>`. */
  readonly netns: string;
  /** The host end of the veth pair. */
  readonly hostInterface: string;
  /** The host's address on the veth: where the node reaches the API server and the registry. */
  readonly hostIP: string;
  /** The node's address (its InternalIP): kubelet, NodePorts, hostPorts, CoreDNS. */
  readonly nodeIP: string;
  /** Pod range (`--cluster-cidr`). */
  readonly podCIDR: string;
  /** Service range (`--service-cluster-ip-range`). */
  readonly serviceCIDR: string;
  /** ClusterIP of the `kubernetes` Service. */
  readonly apiServiceIP: string;
  /** ClusterIP of `kube-system/kube-dns`. */
  readonly dnsIP: string;
}

const SLOTS = 100;

/** The network of slot `slot`. */
export function networkOf(name: string, slot: number): NodeNetwork {
  const b = `10.${100 + slot}`;
  return {
    slot,
    netns: `shardworks-${name}`,
    hostInterface: `sw${slot}`,
    hostIP: `${b}.0.1`,
    nodeIP: `${b}.0.2`,
    podCIDR: `${b}.128.0/17`,
    serviceCIDR: `${b}.16.0/20`,
    apiServiceIP: `${b}.16.1`,
    dnsIP: `${b}.16.10`,
  };
}

function ipToInt(ip: string): number {
  return ip.split(".").reduce((n, octet) => n * 256 + Number(octet), 0);
}

/** Whether two IPv4 CIDRs overlap. */
export function overlaps(a: string, b: string): boolean {
  const range = (cidr: string): [number, number] => {
    const [ip, bits] = cidr.split("/");
    const size = 2 ** (32 - Number(bits ?? 32));
    const start = Math.floor(ipToInt(ip ?? "0.0.0.0") / size) * size;
    return [start, start + size - 1];
  };
  const [a0, a1] = range(a);
  const [b0, b1] = range(b);
  return a0 <= b1 && b0 <= a1;
}

/** The host's IPv4 routes and addresses that are not a testbed cluster's own. */
function hostPrefixes(): string[] {
  const routes = z
    .array(z.object({ dst: z.string(), dev: z.string().optional() }))
    .parse(JSON.parse(sh("ip", ["-j", "-4", "route", "show", "table", "all"]) || "[]"));
  const addrs = z
    .array(
      z.object({
        ifname: z.string(),
        addr_info: z.array(z.object({ local: z.string(), prefixlen: z.number() })),
      }),
    )
    .parse(JSON.parse(sh("ip", ["-j", "-4", "addr"]) || "[]"));
  const ours = (dev: string | undefined): boolean => dev !== undefined && /^sw\d+$/.test(dev);
  return [
    ...routes
      .filter((r) => r.dst !== "default" && !ours(r.dev))
      .map((r) => (r.dst.includes("/") ? r.dst : `${r.dst}/32`)),
    ...addrs
      .filter((a) => !ours(a.ifname))
      .flatMap((a) => a.addr_info.map((i) => `${i.local}/${i.prefixlen}`)),
  ];
}

const NetworkFile = z.object({
  slot: z
    .number()
    .int()
    .min(0)
    .max(SLOTS - 1),
});

/**
 * The cluster's slot: the one it had, or the lowest free one whose block clashes with nothing on
 * the host. Claims are files created exclusively (`clusters/.slots/<s>`), so two `up`s at once
 * never take the same slot; a claim whose cluster directory is gone is taken over.
 */
export async function ensureSlot(name: string): Promise<NodeNetwork> {
  const dir = clusterDir(name);
  const file = join(dir, "network.json");
  const claims = join(clustersRoot(), ".slots");
  await mkdir(claims, { recursive: true });
  const owner = (slot: number): string | undefined => {
    try {
      return readFileSync(join(claims, String(slot)), "utf8").trim();
    } catch {
      return undefined;
    }
  };
  if (existsSync(file)) {
    const parsed = NetworkFile.safeParse(JSON.parse(await readFile(file, "utf8")));
    if (parsed.success && owner(parsed.data.slot) === name)
      return networkOf(name, parsed.data.slot);
  }
  const host = hostPrefixes();
  for (let slot = 0; slot < SLOTS; slot++) {
    const block = `10.${100 + slot}.0.0/16`;
    const clash = host.find((p) => overlaps(p, block));
    if (clash !== undefined) continue;
    const claim = join(claims, String(slot));
    const current = owner(slot);
    if (current !== undefined) {
      const other = join(clustersRoot(), current, "network.json");
      const stillThere =
        existsSync(other) &&
        NetworkFile.safeParse(JSON.parse(readFileSync(other, "utf8"))).data?.slot === slot;
      if (stillThere) continue;
      await rm(claim, { force: true });
    }
    try {
      await writeFile(claim, `${name}\n`, { flag: "wx" });
    } catch {
      continue; // another `up` took it just now
    }
    await writeFile(file, `${JSON.stringify({ slot })}\n`);
    return networkOf(name, slot);
  }
  throw new Error(
    `no free network slot: 10.100.0.0/16 … 10.199.0.0/16 are all taken by clusters or clash with the host's routes; remove clusters with \`npm run cluster -- down --purge <name>\``,
  );
}

/** Give the slot back (`down --purge`). */
export async function releaseSlot(name: string, slot: number): Promise<void> {
  const claim = join(clustersRoot(), ".slots", String(slot));
  if (existsSync(claim) && readFileSync(claim, "utf8").trim() === name) await rm(claim);
}

function netnsExists(netns: string): boolean {
  return existsSync(`/run/netns/${netns}`);
}

function linkExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

/** Run a command inside the node's network namespace (host mount namespace kept). */
export function inNode(net: NodeNetwork, command: string, args: readonly string[]): string {
  return sh("nsenter", [`--net=/run/netns/${net.netns}`, command, ...args]);
}

/** Create the node's network namespace, its veth pair, addresses, routes and sysctls. */
export function createNodeNetwork(net: NodeNetwork): void {
  deleteNodeNetwork(net); // leftovers of a crash
  const peer = `sw${net.slot}n`;
  sh("ip", ["netns", "add", net.netns]);
  sh("ip", ["link", "add", net.hostInterface, "type", "veth", "peer", "name", peer]);
  sh("ip", ["link", "set", peer, "netns", net.netns]);
  sh("ip", ["addr", "add", `${net.hostIP}/30`, "dev", net.hostInterface]);
  sh("ip", ["link", "set", net.hostInterface, "up"]);
  const ip = (...args: string[]): string => sh("ip", ["-n", net.netns, ...args]);
  ip("link", "set", "lo", "up");
  ip("link", "set", peer, "name", "eth0");
  ip("addr", "add", `${net.nodeIP}/30`, "dev", "eth0");
  ip("link", "set", "eth0", "up");
  ip("route", "add", "default", "via", net.hostIP);
  for (const range of [net.podCIDR, net.serviceCIDR]) {
    sh("ip", ["route", "add", range, "via", net.nodeIP, "dev", net.hostInterface]);
  }
  // Per-namespace sysctls: the node routes for its pods, and bridged pod-to-pod traffic passes
  // iptables (kube-proxy's DNAT of a Service whose endpoint sits on the same bridge).
  inNode(net, "sysctl", ["-q", "-w", "net.ipv4.ip_forward=1"]);
  if (existsSync("/proc/sys/net/bridge/bridge-nf-call-iptables")) {
    inNode(net, "sysctl", ["-q", "-w", "net.bridge.bridge-nf-call-iptables=1"]);
  }
}

/** Delete the namespace (its iptables rules, bridge and addresses go with it) and the veth. */
export function deleteNodeNetwork(net: NodeNetwork): void {
  if (netnsExists(net.netns)) sh("ip", ["netns", "delete", net.netns]);
  // The veth goes with the namespace, a moment later; delete it ourselves if it stays.
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (const link of [net.hostInterface, `sw${net.slot}n`]) {
    for (let i = 0; i < 100 && linkExists(link); i++) Atomics.wait(pause, 0, 0, 20);
    if (linkExists(link)) spawnSync("ip", ["link", "delete", link]);
    if (linkExists(link)) throw new Error(`could not delete interface ${link}`);
  }
}

/** Whether the node's network is in place. */
export function nodeNetworkUp(net: NodeNetwork): boolean {
  return netnsExists(net.netns) && linkExists(net.hostInterface);
}
