/**
 * The HTTP connection pools registry fetches go through (undici Agents). A shard's image is
 * fetched through {@link publicOnlyDispatcher}: every connection, whatever the name, is checked
 * on the address it resolved to, at connect time, so a public-looking name whose DNS answers with
 * a loopback, private or link-local address (or changes its answer after an earlier check) never
 * makes the node connect into its own network.
 */
import { lookup, type LookupAddress, type LookupAllOptions, type LookupOptions } from "node:dns";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { Agent, buildConnector, type Dispatcher } from "undici";
import { nonPublicHostReason, reachedAddress } from "../../lib/addresses";
import { logger } from "../../lib/logger";

const log = logger.child({ component: "registry-connect" });

/** How long establishing one connection may take (the request's own timeout bounds the rest). */
export const CONNECT_TIMEOUT_MS = 10_000;

/**
 * The error a refused connection fails with; `code` tells it from a network failure. The
 * message does not say which address the name resolved to (it reaches the shard, in its
 * sandbox's status: the node's DNS answers are not the shard's to read); the log does.
 */
export class NonPublicAddressError extends Error {
  readonly code = "ENONPUBLIC";
  constructor(hostname: string, reason: string) {
    const is = isIP(hostname) === 0 ? "resolves to" : "is";
    super(`${hostname} ${is} ${reason}; only public registries are reached for it`);
    this.name = "NonPublicAddressError";
  }
}

/** This host's own addresses ({@link reachedAddress}): public ones too are "the node's own network". */
function ownAddresses(): Set<string> {
  return new Set(
    Object.values(networkInterfaces())
      .flat()
      .flatMap((i) => (i ? [reachedAddress(i.address.toLowerCase())] : [])),
  );
}

/**
 * Why a connection to `address` (a literal) is refused for a shard's image, or undefined. The
 * node's own addresses are compared in every spelling: `::ffff:<its IPv4>` reaches it too.
 */
function refusal(address: string, own: ReadonlySet<string>): string | undefined {
  return (
    nonPublicHostReason(address) ??
    (own.has(reachedAddress(address.toLowerCase())) ? "an address of this node" : undefined)
  );
}

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * `net.connect`'s `lookup`, refusing names with any non-public address: all addresses are
 * checked, not only the first, since the connection may try each of them (happy eyeballs).
 */
function publicLookup(hostname: string, options: LookupOptions, callback: LookupCallback): void {
  const all: LookupAllOptions = { ...options, all: true };
  lookup(hostname, all, (error, addresses) => {
    if (error) return callback(error, []);
    const own = ownAddresses();
    for (const { address } of addresses) {
      const reason = refusal(address, own);
      if (reason !== undefined) {
        log.warn({ hostname, address, reason }, "refused a connection to a non-public address");
        return callback(new NonPublicAddressError(hostname, reason), []);
      }
    }
    if (options.all) return callback(null, addresses);
    const first = addresses[0];
    if (!first) return callback(new NonPublicAddressError(hostname, "no address"), []);
    return callback(null, first.address, first.family);
  });
}

let anyAddress: Dispatcher | undefined;
let publicOnly: Dispatcher | undefined;

/** The pool for the platform's images: any address, with a connect timeout. */
export function anyAddressDispatcher(): Dispatcher {
  return (anyAddress ??= new Agent({ connect: { timeout: CONNECT_TIMEOUT_MS } }));
}

/**
 * Connects as undici does, after checking the address: a name in {@link publicLookup}, a literal
 * address here (`net.connect` calls no lookup for one, so the lookup's check would never see it).
 */
function publicConnector(): buildConnector.connector {
  const connect = buildConnector({ timeout: CONNECT_TIMEOUT_MS, lookup: publicLookup });
  return (options, callback) => {
    const { hostname } = options;
    if (isIP(hostname) !== 0) {
      const reason = refusal(hostname, ownAddresses());
      if (reason !== undefined) {
        log.warn({ hostname, reason }, "refused a connection to a non-public address");
        callback(new NonPublicAddressError(hostname, reason), null);
        return;
      }
    }
    connect(options, callback);
  };
}

/** The pool for a shard's images: public addresses only, checked when each connection is made. */
export function publicOnlyDispatcher(): Dispatcher {
  return (publicOnly ??= new Agent({ connect: publicConnector() }));
}
