/**
 * A shard's part of translation: the gRPC clients' fork clusters and routes (by header and by
 * baggage), and the gateway's exact-match entry of each fork, built once per shard record.
 */
import { isIPv4 } from "node:net";
import type { ShardRecord } from "../../../contract/model";
import { ROUTING_KEY_BAGGAGE_MEMBER, ROUTING_KEY_HEADER } from "../routing-key-filter";
import { ExtensionTypeUrl, pack } from "../xds/protos";
import type { XdsResource } from "../xds/resource";
import { clusterResources, routeTimeout } from "./envoy-resources";
import {
  forkClusterName,
  gatewayForkClusterName,
  sharedForkClusterName,
  UPSTREAM_HEADER,
  upstreamHttp,
  type UpstreamHttp,
} from "./names";
import { encodeMessage, encodeVirtualHost } from "./wire";

/**
 * An RE2 pattern (Envoy and gRPC match it against the whole header value) that holds when the
 * baggage list has the member `shardworks-routing-key=<key>`: at the start or after a comma, with
 * optional whitespace around the key, `=` and value, optionally followed by `;properties`.
 * Routing keys are `[a-z0-9-]` (validated), and are still escaped here so no key can widen it.
 */
export function baggageRegex(routingKey: string): string {
  const key = escapeRegex(ROUTING_KEY_BAGGAGE_MEMBER);
  const value = escapeRegex(routingKey);
  return `(?:.*,)?[ \\t]*${key}[ \\t]*=[ \\t]*${value}[ \\t]*(?:;[^,]*)?(?:,.*)?`;
}

function escapeRegex(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&");
}

/** A route, as the plain object Envoy's `Route` message is built from. */
export type Route = Record<string, unknown>;
/** The two routes to a fork for gRPC clients: by header, and by baggage member. */
export interface ForkRoutes<T> {
  readonly header: T;
  readonly baggage: T;
}
/** What the gateway needs of one fork: its exact-match entry and, for a DNS fork, its cluster. */
export interface GatewayFork {
  readonly http: UpstreamHttp;
  /** `MatchMap { map: { <key>: OnMatch } }`, encoded (a part of the virtual host's matcher). */
  readonly entry: Uint8Array;
  /** The OnMatch as a plain object (for the merged message `consistent()` reads). */
  readonly onMatch: Record<string, unknown>;
  readonly cluster?: XdsResource;
}
/** What translation builds of a shard's fork of one service for gRPC clients. */
export interface ForkPart {
  /** The header route and the baggage route to the fork. */
  readonly routes: ForkRoutes<Route>;
  /** `VirtualHost { routes: [route] }` of each, encoded (parts of the virtual host). */
  readonly routeParts: ForkRoutes<Uint8Array>;
  /** The gRPC clients' cluster (and load assignment) of the fork. */
  readonly resources: readonly XdsResource[];
}
/** What translation builds of one shard record (the gateway's entries lazily). */
export interface ShardPart {
  readonly record: ShardRecord;
  /** Service → this shard's fork of it (one lookup per fork when a service is rebuilt). */
  readonly forks: ReadonlyMap<string, ForkPart>;
  /** Service → the gateway's entry for this fork, built once per upstream HTTP version. */
  readonly gateway: Map<string, GatewayFork>;
}

/**
 * A shard's part, built once per (immutable) record. `previous`, the part of the shard's last
 * record, lends the fork clusters whose destination did not change: a new routing key changes
 * routes and gateway entries, not clusters, so the snapshot sees the same cluster objects.
 */
export function shardPart(record: ShardRecord, previous?: ShardPart): ShardPart {
  const forks = new Map<string, ForkPart>();
  for (const [service, destination] of Object.entries(record.forks)) {
    const name = forkClusterName(record.name, service);
    const kept =
      previous?.record.name === record.name && previous.record.forks[service] === destination
        ? previous.forks.get(service)?.resources
        : undefined;
    const routes = {
      header: {
        name: `${record.name}/${service}/header`,
        match: {
          prefix: "",
          headers: [{ name: ROUTING_KEY_HEADER, string_match: { exact: record.routingKey } }],
        },
        route: { cluster: name },
      },
      baggage: {
        name: `${record.name}/${service}/baggage`,
        match: {
          prefix: "",
          headers: [
            {
              name: "baggage",
              string_match: { safe_regex: { regex: baggageRegex(record.routingKey) } },
            },
          ],
        },
        route: { cluster: name },
      },
    };
    forks.set(service, {
      routes,
      routeParts: {
        header: encodeVirtualHost({ routes: [routes.header] }),
        baggage: encodeVirtualHost({ routes: [routes.baggage] }),
      },
      resources: kept ?? forkClusterResources(name, destination),
    });
  }
  return { record, forks, gateway: new Map() };
}

/** The gRPC clients' cluster of a fork, and its load assignment when it has one. */
function forkClusterResources(name: string, destination: string): readonly XdsResource[] {
  const built = clusterResources(name, destination);
  return built.endpoints ? [built.cluster, built.endpoints] : [built.cluster];
}

/** The gateway's entry for `part`'s fork of `service` (memoized per HTTP version). */
export function gatewayFork(
  part: ShardPart,
  service: string,
  baselineHttp: UpstreamHttp,
): GatewayFork {
  const { record } = part;
  const declared = record.protocols?.[service];
  const http = declared === undefined ? baselineHttp : upstreamHttp(declared);
  const cached = part.gateway.get(service);
  if (cached?.http === http) return cached;
  const destination = record.forks[service] ?? "";
  const host = destination.slice(0, destination.lastIndexOf(":"));
  let cluster: XdsResource | undefined;
  const route: Route = {
    name: `${record.name}/${service}`,
    match: { prefix: "" },
    route: { cluster: "", ...routeTimeout(http) },
  };
  if (isIPv4(host)) {
    // One shared ORIGINAL_DST cluster: the route names the fork's address in a header the
    // cluster reads (overwriting whatever a client sent in it).
    route.route = { ...(route.route as Route), cluster: sharedForkClusterName(http) };
    route.request_headers_to_add = [
      {
        header: { key: UPSTREAM_HEADER, value: destination },
        append_action: "OVERWRITE_IF_EXISTS_OR_ADD",
      },
    ];
  } else {
    const name = gatewayForkClusterName(record.name, service);
    cluster = clusterResources(name, destination, http).cluster;
    route.route = { ...(route.route as Route), cluster: name };
  }
  const onMatch = {
    action: { name: route.name as string, typed_config: pack(ExtensionTypeUrl.Route, route) },
  };
  const entry = encodeMessage("xds.type.matcher.v3.Matcher.MatcherTree.MatchMap", {
    map: { [record.routingKey]: onMatch },
  });
  const fork: GatewayFork = { http, entry, onMatch, ...(cluster ? { cluster } : {}) };
  part.gateway.set(service, fork);
  return fork;
}

/** Where a shard named `name` sorts in a list of parts sorted by shard name (binary search). */
export function sortedIndex(list: readonly ShardPart[], name: string): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]!.record.name < name) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
