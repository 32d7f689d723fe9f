/**
 * Which hosts a tenant may make the platform connect to. Used at the API's edge (image registries
 * named by shard tokens) and by the node's registry client on every redirect hop, so a sandbox
 * spec cannot turn a node into a scanner of its own loopback, the cloud metadata service or the
 * private network it sits in (blind SSRF).
 */
import { BlockList, isIP, isIPv4 } from "node:net";

/**
 * Addresses that are not on the public internet (IANA special-purpose registries): loopback,
 * "this network", private (RFC 1918), carrier-grade NAT, link-local (169.254.169.254 is the cloud
 * metadata service), documentation, benchmarking, multicast, reserved; and their IPv6 peers
 * (unique local, link-local, multicast, IPv4-mapped and NAT64 forms are checked as IPv4).
 */
const NON_PUBLIC = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.88.99.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const) {
  NON_PUBLIC.addSubnet(net, prefix, "ipv4");
}
for (const [net, prefix] of [
  ["::", 128],
  ["::1", 128],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
  ["2001:db8::", 32],
  ["100::", 64],
] as const) {
  NON_PUBLIC.addSubnet(net, prefix, "ipv6");
}

/** Link-local: never a destination for anybody (the metadata service lives there). */
const LINK_LOCAL = new BlockList();
LINK_LOCAL.addSubnet("169.254.0.0", 16, "ipv4");
LINK_LOCAL.addSubnet("fe80::", 10, "ipv6");

/** Names that always mean this host or the metadata service, whatever DNS says. */
const LOCAL_NAMES = /(^|\.)(localhost|localdomain|internal|local|home\.arpa)$/;
const METADATA_NAMES = new Set(["metadata", "metadata.google.internal", "instance-data"]);

/** The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`) or NAT64 (`64:ff9b::/96`) address. */
function embeddedIPv4(ip: string): string | undefined {
  const lower = ip.toLowerCase();
  const dotted = /^(?:::ffff:|64:ff9b::)([0-9.]+)$/.exec(lower);
  if (dotted?.[1] && isIPv4(dotted[1])) return dotted[1];
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (hex?.[1] && hex[2]) {
    const n = (parseInt(hex[1], 16) << 16) | parseInt(hex[2], 16);
    return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
  }
  return undefined;
}

/** True when `ip` (a literal IPv4 or IPv6 address, without brackets) is a public address. */
export function isPublicAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  if (family === 4) return !NON_PUBLIC.check(ip, "ipv4");
  const v4 = embeddedIPv4(ip);
  if (v4 !== undefined) return !NON_PUBLIC.check(v4, "ipv4");
  return !NON_PUBLIC.check(ip, "ipv6");
}

/** True when `ip` is link-local (IPv4 169.254/16 or IPv6 fe80::/10, mapped forms included). */
export function isLinkLocalAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 4) return LINK_LOCAL.check(ip, "ipv4");
  if (family !== 6) return false;
  const v4 = embeddedIPv4(ip);
  return v4 !== undefined ? LINK_LOCAL.check(v4, "ipv4") : LINK_LOCAL.check(ip, "ipv6");
}

/**
 * Why a host (a name or an IP literal, IPv6 with or without brackets, no port) is not a public
 * host, or undefined when it may be one. Names are judged by their form only (no DNS lookup):
 * `localhost`, `*.internal`, `*.local`, single-label names and metadata names are refused; a
 * public-looking name that resolves to a private address is not caught here: the node checks
 * the resolved address when it connects (`node-agent/images/dispatchers.ts`).
 */
export function nonPublicHostReason(host: string): string | undefined {
  const bare = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (isIP(bare) !== 0) {
    if (isLinkLocalAddress(bare)) return "a link-local address (the cloud metadata service)";
    return isPublicAddress(bare) ? undefined : "a loopback, private or reserved address";
  }
  const name = bare.replace(/\.$/, "");
  if (METADATA_NAMES.has(name)) return "a cloud metadata service name";
  if (LOCAL_NAMES.test(name)) return "a local name (localhost, *.internal, *.local)";
  if (!name.includes(".")) return "a single-label name (resolved by the node's local search path)";
  // A numeric last label makes URL parsers read the whole name as an IPv4 address.
  if (/(^|\.)(0x[0-9a-f]*|[0-9]+)$/.test(name)) return "a non-canonical IPv4 address";
  return undefined;
}

/** The host part of `host[:port]` / `[v6]:port` (brackets kept off). */
export function hostOf(hostPort: string): string {
  if (hostPort.startsWith("[")) return hostPort.slice(1, hostPort.indexOf("]"));
  const colon = hostPort.lastIndexOf(":");
  return colon >= 0 ? hostPort.slice(0, colon) : hostPort;
}
