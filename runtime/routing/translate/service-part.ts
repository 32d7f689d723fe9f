/**
 * A baseline service's part of translation: its cluster, its virtual host for gRPC clients (every
 * fork's routes, then the baseline) and the gateway's: a plain baseline virtual host, and per
 * routing-key bucket holding forks of it, an exact-match matcher over those forks (ADR 0016).
 */
import type { BaselineService } from "../../../contract/model";
import { ROUTING_KEY_HEADER } from "../routing-key-filter";
import { ExtensionTypeUrl, pack, TypeUrl } from "../xds/protos";
import { makeResourceFromParts, type XdsResource } from "../xds/resource";
import { apiListener, clusterResources, routeTimeout } from "./envoy-resources";
import { baselineClusterName, upstreamHttp, type UpstreamHttp } from "./names";
import { gatewayFork, type GatewayFork, type Route, type ShardPart } from "./shard-part";
import {
  encodeMessage,
  encodeVirtualHost,
  hashOf,
  lengthDelimited,
  messageType,
  virtualHostsPart,
} from "./wire";

/**
 * Virtual hosts of one of the gateway's route configurations, as a part of it: the messages
 * (what `consistent()` reads), `RouteConfiguration { virtual_hosts }` encoded, and its sha256.
 */
export interface IngressPart {
  readonly virtualHosts: readonly Record<string, unknown>[];
  readonly bytes: Uint8Array;
  readonly hash: string;
}

/** The gateway's virtual host of a service in one bucket: the bucket's forks, sorted by shard. */
export interface BucketPart extends IngressPart {
  readonly forks: readonly ShardPart[];
}

/** What translation builds of one baseline service and the sorted parts of its forks. */
export interface ServicePart {
  readonly baseline: BaselineService;
  readonly shardParts: readonly ShardPart[];
  /**
   * The baseline's cluster (and load assignment) and the gRPC clients' listener: the same list
   * while the baseline's destination, hosts and protocol stay.
   */
  readonly resources: readonly XdsResource[];
  /**
   * The clusters (and load assignments) of each fork of this service: the gRPC clients' and, for
   * forks the gateway cannot reach through its shared cluster, the gateway's. The same list
   * while they are the same.
   */
  readonly forkResources: readonly XdsResource[];
  /** The gRPC clients' route configuration of the service: every fork's routes, then baseline. */
  readonly route: XdsResource;
  readonly virtualHost: Record<string, unknown>;
  /** The gateway's baseline-only virtual host (scope `base`, and buckets without its forks). */
  readonly gatewayBase: IngressPart;
  /** Bucket → the gateway's virtual host there, for each bucket holding a fork of the service. */
  readonly gatewayBuckets: ReadonlyMap<number, BucketPart>;
}

/**
 * A service's part; the service is also reachable as `<name>.<domain>`. `reuse`, the previous part
 * of the same baseline (unchanged destination, hosts and protocol), lends the bucket virtual
 * hosts whose forks did not change, so a change re-encodes one bucket's entries, not every fork's.
 */
export function servicePart(
  baseline: BaselineService,
  forks: readonly ShardPart[],
  domain: string,
  bucketOf: (fork: ShardPart) => number,
  reuse?: ServicePart,
): ServicePart {
  const clusterName = baselineClusterName(baseline.name);
  const http = upstreamHttp(baseline.protocol);
  // One pass over the forks (sorted by shard) gathers what each contributes, from its part's
  // memoized pieces: a change at 10,000 shards re-walks a service's forks once, not once per list.
  const headerRoutes: Route[] = [];
  const baggageRoutes: Route[] = [];
  const headerBytes: Uint8Array[] = [];
  const baggageBytes: Uint8Array[] = [];
  const forkResources: XdsResource[] = [];
  const byBucket = new Map<number, [ShardPart, GatewayFork][]>();
  for (const part of forks) {
    const grpc = part.forks.get(baseline.name);
    if (grpc) {
      headerRoutes.push(grpc.routes.header);
      baggageRoutes.push(grpc.routes.baggage);
      headerBytes.push(grpc.routeParts.header);
      baggageBytes.push(grpc.routeParts.baggage);
      for (const resource of grpc.resources) forkResources.push(resource);
    }
    const fork = gatewayFork(part, baseline.name, http);
    if (fork.cluster) forkResources.push(fork.cluster);
    const bucket = bucketOf(part);
    let list = byBucket.get(bucket);
    if (!list) byBucket.set(bucket, (list = []));
    list.push([part, fork]);
  }
  const baselineGrpcRoute = {
    name: `${baseline.name}/baseline`,
    match: { prefix: "" },
    route: { cluster: clusterName },
  };
  const virtualHost = {
    name: baseline.name,
    domains: [baseline.name, `${baseline.name}.${domain}`, ...(baseline.hosts ?? [])],
    // Every header route before every baggage route: an explicit header wins.
    routes: [...headerRoutes, ...baggageRoutes, baselineGrpcRoute],
  };
  // The virtual host is assembled from each fork's memoized route encoding (concatenated
  // encodings of one message type merge, repeated fields append), wrapped once as a
  // RouteConfiguration part; the service's own route configuration (gRPC clients pick the
  // virtual host by the target name, i.e. the service name) serves gRPC clients.
  const virtualHostBytes = Buffer.concat([
    encodeVirtualHost({ name: virtualHost.name, domains: virtualHost.domains }),
    ...headerBytes,
    ...baggageBytes,
    encodeVirtualHost({ routes: [baselineGrpcRoute] }),
  ]);

  const baselineRoute = {
    name: `${baseline.name}/baseline`,
    match: { prefix: "" },
    route: { cluster: clusterName, ...routeTimeout(http) },
  };
  const head = { name: baseline.name, domains: virtualHost.domains };
  const gatewayBuckets = new Map<number, BucketPart>();
  for (const [bucket, entries] of byBucket) {
    const previous = reuse?.gatewayBuckets.get(bucket);
    if (
      previous !== undefined &&
      previous.forks.length === entries.length &&
      previous.forks.every((p, i) => p === entries[i]![0])
    ) {
      gatewayBuckets.set(bucket, previous);
      continue;
    }
    const vhost = gatewayVirtualHost(
      head,
      baselineRoute,
      entries.map(([p, f]) => [p.record.routingKey, f] as const),
    );
    gatewayBuckets.set(bucket, { forks: entries.map(([p]) => p), ...ingressPart(vhost) });
  }
  return {
    baseline,
    shardParts: forks,
    resources: reuse?.resources ?? baselineResources(baseline, http),
    // The last list when it holds the same resources: its split is reused (see the Translator).
    forkResources: sameList(reuse?.forkResources, forkResources)
      ? reuse!.forkResources
      : forkResources.length === 0
        ? NO_RESOURCES
        : forkResources,
    route: makeResourceFromParts(
      TypeUrl.Route,
      baseline.name,
      { name: baseline.name, virtual_hosts: [virtualHost] },
      [pack(TypeUrl.Route, { name: baseline.name }).value, virtualHostsPart(virtualHostBytes)],
    ),
    virtualHost,
    gatewayBase:
      reuse?.gatewayBase ?? ingressPart(gatewayVirtualHost(head, baselineRoute, NO_ENTRIES)),
    gatewayBuckets,
  };
}

/** The baseline's cluster (and load assignment) and the gRPC clients' listener of the service. */
function baselineResources(baseline: BaselineService, http: UpstreamHttp): readonly XdsResource[] {
  const { name } = baseline;
  const built = clusterResources(baselineClusterName(name), baseline.destination, http);
  return [built.cluster, ...(built.endpoints ? [built.endpoints] : []), apiListener(name, name)];
}

const NO_RESOURCES: readonly XdsResource[] = [];

function sameList<T>(a: readonly T[] | undefined, b: readonly T[]): boolean {
  return a !== undefined && a.length === b.length && a.every((x, i) => x === b[i]);
}

const NO_ENTRIES: readonly (readonly [string, GatewayFork])[] = [];

/** A virtual host as a part of the gateway's route configuration. */
function ingressPart(built: { message: Record<string, unknown>; bytes: Uint8Array }): IngressPart {
  const bytes = virtualHostsPart(built.bytes);
  return { virtualHosts: [built.message], bytes, hash: hashOf(bytes) };
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
