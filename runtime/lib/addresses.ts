/**
 * Which hosts a tenant may make the platform connect to. Used at the API's edge (image registries
 * named by shard tokens) and by the node's registry client on every redirect hop, so a sandbox
 * spec cannot turn a node into a scanner of its own loopback, the cloud metadata service or the
 * private network it sits in (blind SSRF).
 */
import { BlockList, isIP } from "node:net";

/**
 * Addresses that are not on the public internet (IANA special-purpose registries): loopback,
 * "this network", private (RFC 1918), carrier-grade NAT, link-local (169.254.169.254 is the cloud
 * metadata service), documentation, benchmarking, multicast, reserved; and their IPv6 peers.
 * IPv6 forms that carry an IPv4 address a stack or a translator hands on to IPv4 (IPv4-mapped,
 * IPv4-translated, NAT64's well-known prefix) are judged by that IPv4 address
 * ({@link embeddedIPv4}); the other IPv6 ranges here are refused whole.
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
  // Unspecified, loopback and the deprecated IPv4-compatible ::a.b.c.d (RFC 4291).
  ["::", 96],
  // NAT64 local-use prefix (RFC 8215): a translator inside some network, never global.
  ["64:ff9b:1::", 48],
  // Discard-only (RFC 6666).
  ["100::", 64],
  // IETF protocol assignments (RFC 2928): Teredo 2001::/32 (tunnels to an IPv4 address),
  // benchmarking 2001:2::/48, ORCHID 2001:10::/28, ORCHIDv2 2001:20::/28, … no host lives here.
  ["2001::", 23],
  // Documentation (RFC 3849, RFC 9637).
  ["2001:db8::", 32],
  ["3fff::", 20],
  // 6to4 (RFC 3056, deprecated by RFC 7526): tunnels to the IPv4 address in bits 16-47.
  ["2002::", 16],
  // SRv6 segment identifiers (RFC 9602).
  ["5f00::", 16],
  // Unique local, link-local, site-local (deprecated, RFC 3879), multicast.
  ["fc00::", 7],
  ["fe80::", 10],
  ["fec0::", 10],
  ["ff00::", 8],
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

/**
 * The eight 16-bit groups of an IPv6 literal, or undefined when it is none (or has a zone id,
 * `fe80::1%eth0`, which names a local interface). The WHATWG URL parser canonicalises it first
 * (no dotted quad, zeros compressed), so every spelling of an address gives the same groups.
 */
function ipv6Groups(ip: string): number[] | undefined {
  let canonical: string;
  try {
    canonical = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
  const [head = "", tail] = canonical.split("::");
  const parse = (part: string) => (part === "" ? [] : part.split(":").map((g) => parseInt(g, 16)));
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  return [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
}

/**
 * The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-translated
 * (`::ffff:0:a.b.c.d`, RFC 2765) or NAT64 well-known-prefix (`64:ff9b::a.b.c.d`, RFC 6052)
 * address, in any spelling: what a dual-stack socket or a translator connects to.
 */
function embeddedIPv4(ip: string): string | undefined {
  const g = ipv6Groups(ip);
  if (g === undefined) return undefined;
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  const mapped = zeros(0, 5) && g[5] === 0xffff;
  const translated = zeros(0, 4) && g[4] === 0xffff && g[5] === 0;
  const nat64 = g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6);
  if (!mapped && !translated && !nat64) return undefined;
  const [hi = 0, lo = 0] = [g[6], g[7]];
  return [hi >> 8, hi & 255, lo >> 8, lo & 255].join(".");
}

/** True when `ip` (a literal IPv4 or IPv6 address, without brackets) is a public address. */
export function isPublicAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  if (family === 4) return !NON_PUBLIC.check(ip, "ipv4");
  // A zone id (`%eth0`) names a local interface: never a public destination.
  if (ipv6Groups(ip) === undefined) return false;
  const v4 = embeddedIPv4(ip);
  if (v4 !== undefined) return !NON_PUBLIC.check(v4, "ipv4");
  return !NON_PUBLIC.check(ip, "ipv6");
}

/**
 * The address a connection to `ip` (a literal, without brackets) reaches, in one spelling: the
 * IPv4 address inside an IPv4-mapped, IPv4-translated or NAT64 form, else the address in its
 * canonical form (IPv6 lower case, zeros compressed). Two spellings of one address compare equal.
 */
export function reachedAddress(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  return embeddedIPv4(ip) ?? new URL(`http://[${ip}]/`).hostname.slice(1, -1);
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
