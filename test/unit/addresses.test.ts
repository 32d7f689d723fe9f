/**
 * Which IP literals count as public (`runtime/lib/addresses.ts`): what a shard's registry may be
 * at the edge and what the node may connect to for a shard's image. Every IPv6 form that is not
 * a public host, or that carries an IPv4 address the node's network could reach, is listed here.
 */
import test from "ava";
import {
  isLinkLocalAddress,
  isPublicAddress,
  nonPublicHostReason,
} from "../../runtime/lib/addresses";

/** [address, what it is]: none of these is a public address. */
const NON_PUBLIC: readonly (readonly [string, string])[] = [
  ["127.0.0.1", "IPv4 loopback"],
  ["10.1.2.3", "RFC 1918"],
  ["169.254.169.254", "link-local (metadata)"],
  ["100.64.0.1", "CGNAT"],
  ["::", "unspecified"],
  ["::1", "loopback"],
  ["0:0:0:0:0:0:0:1", "loopback, uncompressed"],
  ["::7f00:1", "IPv4-compatible ::127.0.0.1 (deprecated, ::/96)"],
  ["::127.0.0.1", "IPv4-compatible, dotted"],
  ["::8.8.8.8", "IPv4-compatible with a public IPv4: the whole ::/96 is reserved"],
  ["::ffff:127.0.0.1", "IPv4-mapped loopback"],
  ["::ffff:7f00:1", "IPv4-mapped loopback, hex"],
  ["0:0:0:0:0:ffff:7f00:1", "IPv4-mapped loopback, uncompressed"],
  ["::ffff:10.0.0.1", "IPv4-mapped RFC 1918"],
  ["::ffff:0:7f00:1", "IPv4-translated loopback (::ffff:0:0:0/96)"],
  ["::ffff:0:127.0.0.1", "IPv4-translated loopback, dotted"],
  ["::ffff:0:a9fe:a9fe", "IPv4-translated 169.254.169.254"],
  ["0:0:0:0:ffff:0:c0a8:101", "IPv4-translated 192.168.1.1, uncompressed"],
  ["64:ff9b::7f00:1", "NAT64 well-known prefix, loopback"],
  ["64:ff9b::10.0.0.1", "NAT64 well-known prefix, RFC 1918"],
  ["64:ff9b:1::808:808", "NAT64 local-use prefix 64:ff9b:1::/48 (even with a public IPv4)"],
  ["64:ff9b:1:ffff::1", "NAT64 local-use prefix, elsewhere in the /48"],
  ["100::1", "discard-only 100::/64"],
  ["2001::1", "Teredo 2001::/32"],
  ["2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo with a server and client address"],
  ["2001:2::1", "benchmarking 2001:2::/48"],
  ["2001:10::1", "ORCHID (deprecated) 2001:10::/28"],
  ["2001:20::1", "ORCHIDv2 2001:20::/28"],
  ["2001:1ff::1", "IETF protocol assignments 2001::/23, last /32"],
  ["2001:db8::1", "documentation 2001:db8::/32"],
  ["3fff::1", "documentation 3fff::/20"],
  ["2002:7f00:1::1", "6to4 of 127.0.0.1"],
  ["2002:a00:1::", "6to4 of 10.0.0.1"],
  ["2002:808:808::1", "6to4 of a public IPv4: the whole 2002::/16 is refused"],
  ["5f00::1", "SRv6 SIDs 5f00::/16"],
  ["fc00::1", "unique local"],
  ["fd12:3456::1", "unique local"],
  ["fe80::1", "link-local"],
  ["fe80::1%eth0", "link-local with a zone"],
  ["fec0::1", "site-local fec0::/10 (deprecated)"],
  ["feff:ffff::1", "site-local, end of fec0::/10"],
  ["ff02::1", "multicast"],
];

/** Public addresses, some next to the ranges above. */
const PUBLIC: readonly string[] = [
  "8.8.8.8",
  "1.1.1.1",
  "2606:4700:4700::1111",
  "2a00:1450:4001:80b::200e",
  "2001:200::1", // the first allocation after 2001::/23
  "2001:4860:4860::8888",
  "2003::1", // after 2002::/16
  "::ffff:8.8.8.8", // IPv4-mapped public
  "::ffff:0:808:808", // IPv4-translated public
  "64:ff9b::808:808", // NAT64 well-known prefix with a public IPv4
  "fbff::1", // below fc00::/7
];

test("IPv4-mapped, IPv4-translated, IPv4-compatible, NAT64, 6to4, Teredo, ORCHIDv2, discard, site-local and the other special IPv6 ranges are not public", (t) => {
  for (const [address, what] of NON_PUBLIC) {
    t.false(isPublicAddress(address), `${address} (${what})`);
    const host = address.includes(":") ? `[${address}]` : address;
    t.not(nonPublicHostReason(host), undefined, `${host} (${what})`);
  }
});

test("public IPv4 and IPv6 addresses, and IPv4-carrying forms of a public IPv4, are public", (t) => {
  for (const address of PUBLIC) {
    t.true(isPublicAddress(address), address);
    t.is(nonPublicHostReason(address.includes(":") ? `[${address}]` : address), undefined, address);
  }
});

test("link-local is recognised in every form that reaches it", (t) => {
  for (const address of [
    "169.254.169.254",
    "fe80::1",
    "::ffff:169.254.169.254",
    "::ffff:0:a9fe:a9fe",
    "64:ff9b::a9fe:a9fe",
  ]) {
    t.true(isLinkLocalAddress(address), address);
    t.regex(nonPublicHostReason(`[${address}]`) ?? "", /link-local/, address);
  }
  t.false(isLinkLocalAddress("8.8.8.8"));
  t.false(isLinkLocalAddress("2001:4860:4860::8888"));
});
