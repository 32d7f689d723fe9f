/**
 * A baseline service's part of translation: its cluster, its virtual host for gRPC clients (every
 * fork's routes, then the baseline) and the gateway's: a plain baseline virtual host, and per
 * routing-key bucket holding forks of it, an exact-match matcher over those forks (ADR 0016).
 */
import type { BaselineService } from "../../../contract/model";
import { changedMiddle } from "../../lib/lists";
import { ROUTING_KEY_HEADER } from "../routing-key-filter";
import { ExtensionTypeUrl, pack, TypeUrl } from "../xds/protos";
import { makeResourceFromParts, type XdsResource } from "../xds/resource";
import { apiListener, clusterResources, routeTimeout } from "./envoy-resources";
import { baselineClusterName, upstreamHttp, type UpstreamHttp } from "./names";
import {
  gatewayFork,
  sortedIndex,
  type ForkPart,
  type GatewayFork,
  type Route,
  type ShardPart,
} from "./shard-part";
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
  /** The gateway's baseline-only virtual host (scope `base`, and buckets without its forks). */
  readonly gatewayBase: IngressPart;
  /** Bucket → the gateway's virtual host there, for each bucket holding a fork of the service. */
  readonly gatewayBuckets: ReadonlyMap<number, BucketPart>;
  /** What each fork adds to the lists above, in `shardParts` order: what a change splices. */
  readonly columns: ForkColumns;
}

/**
 * The forks' contributions to a service's lists, one entry per fork in `shardParts` order: routes
 * and the lengths of their encodings (so the encoded routes are spliced by byte offset), and how
 * many of `forkResources` each fork holds.
 */
interface ForkColumns {
  readonly headerRoutes: readonly Route[];
  readonly baggageRoutes: readonly Route[];
  /** Every fork's header route encoding (`VirtualHost { routes }` parts), concatenated. */
  readonly headerBytes: Buffer;
  readonly headerLengths: readonly number[];
  readonly baggageBytes: Buffer;
  readonly baggageLengths: readonly number[];
  readonly resourceCounts: readonly number[];
}

const NO_COLUMNS: ForkColumns = {
  headerRoutes: [],
  baggageRoutes: [],
  headerBytes: Buffer.alloc(0),
  headerLengths: [],
  baggageBytes: Buffer.alloc(0),
  baggageLengths: [],
  resourceCounts: [],
};

/**
 * A service's part; the service is also reachable as `<name>.<domain>`. `reuse`, the previous part
 * of the same baseline (unchanged destination, hosts and protocol), lends what the forks that did
 * not change contributed: the forks' lists are spliced where the fork list changed (it keeps its
 * start and end), and only the buckets of the forks that changed are rebuilt. So one change at
 * 10,000 shards touches the changed fork and one bucket's entries, not every fork of the service.
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
  const before = reuse?.shardParts ?? NO_FORKS;
  const { start, endBefore, endAfter: end } = changedMiddle(before, forks);
  const removed = before.slice(start, endBefore);
  const added = forks.slice(start, end);
  const { columns, forkResources } = spliceColumns(
    reuse?.columns ?? NO_COLUMNS,
    reuse?.forkResources ?? NO_RESOURCES,
    { start, removed: removed.length },
    added.map((part) => contribution(part, baseline.name, http)),
  );

  const baselineGrpcRoute = {
    name: `${baseline.name}/baseline`,
    match: { prefix: "" },
    route: { cluster: clusterName },
  };
  const virtualHost = {
    name: baseline.name,
    domains: [baseline.name, `${baseline.name}.${domain}`, ...(baseline.hosts ?? [])],
    // Every header route before every baggage route: an explicit header wins.
    routes: [...columns.headerRoutes, ...columns.baggageRoutes, baselineGrpcRoute],
  };
  // The virtual host is assembled from each fork's memoized route encoding (concatenated
  // encodings of one message type merge, repeated fields append), wrapped once as a
  // RouteConfiguration part; the service's own route configuration (gRPC clients pick the
  // virtual host by the target name, i.e. the service name) serves gRPC clients.
  const virtualHostBytes = Buffer.concat([
    encodeVirtualHost({ name: virtualHost.name, domains: virtualHost.domains }),
    columns.headerBytes,
    columns.baggageBytes,
    encodeVirtualHost({ routes: [baselineGrpcRoute] }),
  ]);

  const baselineRoute = {
    name: `${baseline.name}/baseline`,
    match: { prefix: "" },
    route: { cluster: clusterName, ...routeTimeout(http) },
  };
  const head = { name: baseline.name, domains: virtualHost.domains };
  return {
    baseline,
    shardParts: forks,
    resources: reuse?.resources ?? baselineResources(baseline, http),
    forkResources,
    route: makeResourceFromParts(
      TypeUrl.Route,
      baseline.name,
      { name: baseline.name, virtual_hosts: [virtualHost] },
      [pack(TypeUrl.Route, { name: baseline.name }).value, virtualHostsPart(virtualHostBytes)],
    ),
    gatewayBase:
      reuse?.gatewayBase ?? ingressPart(gatewayVirtualHost(head, baselineRoute, NO_ENTRIES)),
    gatewayBuckets: bucketParts(reuse?.gatewayBuckets, removed, added, bucketOf, (entries) =>
      gatewayVirtualHost(
        head,
        baselineRoute,
        entries.map((p) => [p.record.routingKey, gatewayFork(p, baseline.name, http)] as const),
      ),
    ),
    columns,
  };
}

const NO_FORKS: readonly ShardPart[] = [];

/** What one fork adds to its service's lists. */
interface Contribution {
  readonly routes: ForkPart["routes"];
  readonly routeParts: ForkPart["routeParts"];
  readonly resources: readonly XdsResource[];
}

/** A fork's contribution (the fork list of a service holds only shards that fork it). */
function contribution(part: ShardPart, service: string, http: UpstreamHttp): Contribution {
  const grpc = part.forks.get(service)!;
  const { cluster } = gatewayFork(part, service, http);
  return {
    routes: grpc.routes,
    routeParts: grpc.routeParts,
    resources: cluster ? [...grpc.resources, cluster] : grpc.resources,
  };
}

/**
 * The columns (and the fork resources list) with `at.removed` forks from `at.start` replaced by
 * the `added` contributions: lists are sliced and joined (copies of references), encodings by byte
 * offset, so nothing of an unchanged fork is read. The last resource list when nothing changed in
 * it, so its per-node split is reused (see the Translator).
 */
function spliceColumns(
  old: ForkColumns,
  oldResources: readonly XdsResource[],
  at: { start: number; removed: number },
  added: readonly Contribution[],
): { columns: ForkColumns; forkResources: readonly XdsResource[] } {
  const end = at.start + at.removed;
  const splice = <T>(list: readonly T[], middle: readonly T[]): T[] =>
    list.slice(0, at.start).concat(middle, list.slice(end));
  const spliceBytes = (bytes: Buffer, lengths: readonly number[], middle: Uint8Array[]): Buffer => {
    const from = sum(lengths, 0, at.start);
    const to = from + sum(lengths, at.start, end);
    return Buffer.concat([bytes.subarray(0, from), ...middle, bytes.subarray(to)]);
  };
  const headerParts = added.map((c) => c.routeParts.header);
  const baggageParts = added.map((c) => c.routeParts.baggage);
  const columns: ForkColumns = {
    headerRoutes: splice(
      old.headerRoutes,
      added.map((c) => c.routes.header),
    ),
    baggageRoutes: splice(
      old.baggageRoutes,
      added.map((c) => c.routes.baggage),
    ),
    headerBytes: spliceBytes(old.headerBytes, old.headerLengths, headerParts),
    headerLengths: splice(
      old.headerLengths,
      headerParts.map((b) => b.byteLength),
    ),
    baggageBytes: spliceBytes(old.baggageBytes, old.baggageLengths, baggageParts),
    baggageLengths: splice(
      old.baggageLengths,
      baggageParts.map((b) => b.byteLength),
    ),
    resourceCounts: splice(
      old.resourceCounts,
      added.map((c) => c.resources.length),
    ),
  };
  const from = sum(old.resourceCounts, 0, at.start);
  const to = from + sum(old.resourceCounts, at.start, end);
  const addedResources = added.flatMap((c) => c.resources);
  const forkResources = sameList(oldResources.slice(from, to), addedResources)
    ? oldResources
    : oldResources.slice(0, from).concat(addedResources, oldResources.slice(to));
  return { columns, forkResources: forkResources.length === 0 ? NO_RESOURCES : forkResources };
}

function sum(list: readonly number[], from: number, to: number): number {
  let total = 0;
  for (let i = from; i < to; i++) total += list[i]!;
  return total;
}

/**
 * The gateway's bucket virtual hosts after `removed` forks were replaced by `added` (both in fork
 * order): the buckets neither touches are the last ones; each other one is rebuilt from its last
 * forks, less the removed, plus the added, in shard order.
 */
function bucketParts(
  previous: ReadonlyMap<number, BucketPart> | undefined,
  removed: readonly ShardPart[],
  added: readonly ShardPart[],
  bucketOf: (fork: ShardPart) => number,
  build: (forks: readonly ShardPart[]) => { message: Record<string, unknown>; bytes: Uint8Array },
): ReadonlyMap<number, BucketPart> {
  const buckets = new Map(previous);
  const gone = new Set(removed);
  const changed = new Map<number, ShardPart[]>();
  for (const part of [...removed, ...added]) {
    const bucket = bucketOf(part);
    if (!changed.has(bucket)) {
      changed.set(
        bucket,
        (buckets.get(bucket)?.forks ?? []).filter((p) => !gone.has(p)),
      );
    }
  }
  for (const part of added) {
    const list = changed.get(bucketOf(part))!;
    list.splice(sortedIndex(list, part.record.name), 0, part);
  }
  for (const [bucket, forks] of changed) {
    if (forks.length === 0) buckets.delete(bucket);
    else buckets.set(bucket, { forks, ...ingressPart(build(forks)) });
  }
  return buckets;
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
