/**
 * A baseline service's part of translation: its cluster, its virtual host for gRPC clients (every
 * fork's routes, then the baseline) and the gateway's (an exact-match matcher over its forks).
 */
import type { BaselineService } from "../../lib/model";
import { ROUTING_KEY_HEADER } from "../routing-key-filter";
import { ExtensionTypeUrl, pack, TypeUrl } from "../xds/protos";
import { makeResourceFromParts, type XdsResource } from "../xds/resource";
import { apiListener, clusterResources, routeTimeout } from "./envoy-resources";
import { baselineClusterName, forkClusterName, upstreamHttp } from "./names";
import { gatewayFork, type GatewayFork, type Route, type ShardPart } from "./shard-part";
import {
  encodeMessage,
  encodeVirtualHost,
  hashOf,
  lengthDelimited,
  messageType,
  virtualHostsPart,
} from "./wire";

/** What translation builds of one baseline service and the sorted parts of its forks. */
export interface ServicePart {
  readonly baseline: BaselineService;
  readonly shardParts: readonly ShardPart[];
  /** The gRPC clients' cluster (and load assignment) of each fork of this service. */
  readonly forkResources: readonly XdsResource[];
  readonly virtualHost: Record<string, unknown>;
  /** The gateway's virtual host (exact-match matcher) and its encoded ingress part. */
  readonly gatewayVirtualHost: Record<string, unknown>;
  readonly ingressPart: Uint8Array;
  /** sha256 of `ingressPart` (the ingress' hash is the hash of its parts' hashes). */
  readonly ingressHash: string;
  readonly resources: XdsResource[];
}

/** A service's part; the service is also reachable as `<name>.<domain>`. */
export function servicePart(
  baseline: BaselineService,
  forks: readonly ShardPart[],
  domain: string,
): ServicePart {
  const clusterName = baselineClusterName(baseline.name);
  const http = upstreamHttp(baseline.protocol);
  const built = clusterResources(clusterName, baseline.destination, http);
  const virtualHost = {
    name: baseline.name,
    domains: [baseline.name, `${baseline.name}.${domain}`, ...(baseline.hosts ?? [])],
    // Every header route before every baggage route: an explicit header wins.
    routes: [
      ...forks.flatMap((p) => p.routes.get(baseline.name)?.header ?? []),
      ...forks.flatMap((p) => p.routes.get(baseline.name)?.baggage ?? []),
      {
        name: `${baseline.name}/baseline`,
        match: { prefix: "" },
        route: { cluster: clusterName },
      },
    ],
  };
  // The virtual host is assembled from each fork's memoized route encoding (concatenated
  // encodings of one message type merge, repeated fields append), wrapped once as a
  // RouteConfiguration part; the service's own route configuration (gRPC clients pick the
  // virtual host by the target name, i.e. the service name) serves gRPC clients.
  const virtualHostBytes = Buffer.concat([
    encodeVirtualHost({ name: virtualHost.name, domains: virtualHost.domains }),
    ...forks.map((p) => p.routeParts.get(baseline.name)?.header ?? new Uint8Array()),
    ...forks.map((p) => p.routeParts.get(baseline.name)?.baggage ?? new Uint8Array()),
    encodeVirtualHost({ routes: virtualHost.routes.slice(-1) }),
  ]);

  const gatewayForks = forks.map((p) => gatewayFork(p, baseline.name, http));
  const baselineRoute = {
    name: `${baseline.name}/baseline`,
    match: { prefix: "" },
    route: { cluster: clusterName, ...routeTimeout(http) },
  };
  const gateway = gatewayVirtualHost(
    { name: baseline.name, domains: virtualHost.domains },
    baselineRoute,
    forks.map((p, i) => [p.record.routingKey, gatewayForks[i]!] as const),
  );
  const resources = [
    built.cluster,
    ...(built.endpoints ? [built.endpoints] : []),
    ...gatewayForks.flatMap((f) => (f.cluster ? [f.cluster] : [])),
    makeResourceFromParts(
      TypeUrl.Route,
      baseline.name,
      { name: baseline.name, virtual_hosts: [virtualHost] },
      [pack(TypeUrl.Route, { name: baseline.name }).value, virtualHostsPart(virtualHostBytes)],
    ),
    apiListener(baseline.name, baseline.name),
  ];
  const ingressPart = virtualHostsPart(gateway.bytes);
  return {
    baseline,
    shardParts: forks,
    forkResources: forks.flatMap((p) => {
      const name = forkClusterName(p.record.name, baseline.name);
      return [...p.clusters, ...p.endpoints].filter((r) => r.name === name);
    }),
    virtualHost,
    gatewayVirtualHost: gateway.message,
    ingressPart,
    ingressHash: hashOf(ingressPart),
    resources,
  };
}

/**
 * The gateway's virtual host of a service. Without forks: one route to the baseline. With forks:
 * a `matcher` whose tree looks `x-shardworks-routing-key` up in an `exact_match_map` (one entry
 * per fork), the baseline route on no match. The map is assembled from each fork's memoized
 * `MatchMap` encoding (map entries are repeated on the wire, so the parts concatenate), and
 * wrapped by hand once: protobufjs would replace, not merge, repeated singular sub-messages.
 */
function gatewayVirtualHost(
  head: { name: string; domains: string[] },
  baselineRoute: Route,
  forks: readonly (readonly [string, GatewayFork])[],
): { message: Record<string, unknown>; bytes: Uint8Array } {
  if (forks.length === 0) {
    const message = { ...head, routes: [baselineRoute] };
    return { message, bytes: encodeVirtualHost(message) };
  }
  const input = {
    name: "routing-key",
    typed_config: pack(ExtensionTypeUrl.HttpRequestHeaderMatchInput, {
      header_name: ROUTING_KEY_HEADER,
    }),
  };
  const onNoMatch = {
    action: {
      name: baselineRoute.name as string,
      typed_config: pack(ExtensionTypeUrl.Route, baselineRoute),
    },
  };
  const treeType = messageType("xds.type.matcher.v3.Matcher.MatcherTree");
  const matcherType = messageType("xds.type.matcher.v3.Matcher");
  const vhostType = messageType("envoy.config.route.v3.VirtualHost");
  const tree = Buffer.concat([
    encodeMessage(treeType.fullName.slice(1), { input }),
    lengthDelimited(
      treeType.fields.exact_match_map!.id,
      Buffer.concat(forks.map(([, f]) => f.entry)),
    ),
  ]);
  const matcher = Buffer.concat([
    lengthDelimited(matcherType.fields.matcher_tree!.id, tree),
    encodeMessage(matcherType.fullName.slice(1), { on_no_match: onNoMatch }),
  ]);
  const bytes = Buffer.concat([
    encodeVirtualHost(head),
    lengthDelimited(vhostType.fields.matcher!.id, matcher),
  ]);
  const message = {
    ...head,
    matcher: {
      matcher_tree: {
        input,
        exact_match_map: { map: Object.fromEntries(forks.map(([key, f]) => [key, f.onMatch])) },
      },
      on_no_match: onNoMatch,
    },
  };
  return { message, bytes };
}
