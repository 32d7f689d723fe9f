/**
 * Translation, pure: baseline services + shards + sandboxes → Envoy Listener, RouteConfiguration,
 * Cluster and ClusterLoadAssignment resources.
 *
 * The gateway (Envoy, ADR 0009): one virtual host per baseline service (domains: its name,
 * `<name>.<domain>` and its `hosts`, the in-cluster names of ADR 0012) whose `matcher` looks the
 * request's routing key up by exact match (`exact_match_map` on `x-shardworks-routing-key`, which
 * the Lua filter of `routing-key-filter.ts` fills from baggage once per request), so the cost of
 * a request does not depend on the number of shards. A fork to an IP address goes through one
 * shared ORIGINAL_DST cluster per upstream protocol (`gateway/forks/http1`, `gateway/forks/http2`),
 * the route setting the address in `x-shardworks-upstream`: no cluster per fork. A fork to a DNS
 * name gets its own LOGICAL_DNS cluster `gateway/shard/<shard>/<service>`. Clusters of `http2` and
 * `grpc` services speak HTTP/2 upstream; the listener accepts HTTP/1.1, h2c and WebSocket upgrades.
 *
 * gRPC xDS clients (which support neither matchers, Lua nor ORIGINAL_DST):
 * - One virtual host per baseline service. For each shard that forks the service, two routes to
 *   the fork's cluster: header `x-shardworks-routing-key: <key>` (exact), or a `baggage` header
 *   holding the member `shardworks-routing-key=<key>` anywhere in its list. Every header route
 *   comes before every baggage route (the first match wins), so an explicit header beats a
 *   baggage member naming another shard. Last, the default route to the baseline.
 * - Shards past `expiresAt` (at `state.now`) are left out, so their routes vanish at expiry even
 *   when the reaper lags.
 * - `<sandbox-id>.sandbox.<domain>` (and `<port>.<sandbox-id>.sandbox.<domain>`) → the node
 *   endpoint of a running sandbox's exposed port.
 * - For gRPC xDS clients (`xds:///<service>`): a Listener named after each service with an
 *   `api_listener` HttpConnectionManager that loads the service's RouteConfiguration over ADS.
 *   For Envoy: one `ingress` listener whose route configuration holds every virtual host.
 *   {@link forNode} splits the two: the gateway never sees api_listeners (Envoy refuses them in
 *   LDS), gRPC clients never see the ingress.
 *
 * {@link Translator} memoizes per shard, per service and per sandbox, so changing one shard among
 * 10,000 rebuilds only that shard's resources and the virtual hosts of the services it forks.
 */
import { createHash } from "node:crypto";
import { isIPv4 } from "node:net";
import {
  DEFAULT_SERVICE_PROTOCOL,
  type BaselineService,
  type SandboxRecord,
  type ServiceProtocol,
  type ShardRecord,
} from "../lib/model";
import * as protobuf from "protobufjs";
import {
  ROUTING_KEY_BAGGAGE_MEMBER,
  ROUTING_KEY_HEADER,
  routingKeyFilter,
  routingKeyFromBaggage,
} from "./routing-key-filter";
import { assertKnownFields, envoyRoot, ExtensionTypeUrl, pack, TypeUrl } from "./xds/protos";
import {
  makeResource,
  makeResourceFromParts,
  type SnapshotResources,
  type XdsResource,
} from "./xds/snapshot";

export { ROUTING_KEY_BAGGAGE_MEMBER, ROUTING_KEY_HEADER, routingKeyFromBaggage };
/** The header the gateway's fork routes set to the fork's `ip:port` (read by ORIGINAL_DST). */
export const UPSTREAM_HEADER = "x-shardworks-upstream";
/** The listener and route configuration Envoy (the gateway) loads. */
export const INGRESS_NAME = "ingress";

/** Service names translation reserves (resource names of the gateway): not a baseline service. */
export const RESERVED_SERVICE_NAMES: readonly string[] = [INGRESS_NAME];

/** What translation reads. */
export interface RoutingState {
  readonly baseline: readonly BaselineService[];
  readonly shards: readonly ShardRecord[];
  readonly sandboxes: readonly SandboxRecord[];
  /** Shards whose `expiresAt` is not after `now` are left out; absent = keep every shard. */
  readonly now?: Date;
}

/** The earliest `expiresAt` after `now` (when routes next change without an etcd event). */
export function nextExpiry(shards: readonly ShardRecord[], now: Date): Date | undefined {
  let next: number | undefined;
  for (const shard of shards) {
    const at = expiry(shard);
    if (at > now.getTime() && (next === undefined || at < next)) next = at;
  }
  return next === undefined ? undefined : new Date(next);
}

/** `shard/service` of every fork whose service is not in the baseline (such forks route nowhere). */
export function unservedForks(state: RoutingState): string[] {
  // Plain loops: the controller runs this on every change, over every shard.
  const services = new Set(state.baseline.map((b) => b.name));
  const out: string[] = [];
  for (const s of state.shards) {
    for (const service in s.forks) if (!services.has(service)) out.push(`${s.name}/${service}`);
  }
  return out;
}

/** Which kind of xDS client a node is: the Envoy gateway, or a gRPC xDS client. */
export type NodeKind = "gateway" | "grpc";

/**
 * The resources one kind of node gets. The gateway: clusters, endpoints, the `ingress` listener
 * and route configuration. gRPC clients: clusters, endpoints, the api_listeners and the
 * per-service (and per-sandbox) route configurations.
 */
export function forNode(resources: SnapshotResources, kind: NodeKind): SnapshotResources {
  const split = perNode.get(resources);
  if (split) return split[kind];
  const keep = (r: XdsResource): boolean => keptFor(r, kind);
  return {
    [TypeUrl.Cluster]: resources[TypeUrl.Cluster].filter(keep),
    [TypeUrl.Endpoint]: resources[TypeUrl.Endpoint].filter(keep),
    [TypeUrl.Listener]: resources[TypeUrl.Listener].filter(keep),
    [TypeUrl.Route]: resources[TypeUrl.Route].filter(keep),
  };
}

type Lists = Record<TypeUrl, XdsResource[]>;
/** A part's resources, all and per kind of node. */
interface Split {
  readonly all: Lists;
  readonly gateway: Lists;
  readonly grpc: Lists;
}
const splits = new WeakMap<object, Split>();
/** `resources` (the part `owner`'s) by type, all and per kind; memoized per (immutable) part. */
function splitOf(owner: object, resources: readonly XdsResource[]): Split {
  let split = splits.get(owner);
  if (split) return split;
  const empty = (): Lists => ({
    [TypeUrl.Cluster]: [],
    [TypeUrl.Endpoint]: [],
    [TypeUrl.Listener]: [],
    [TypeUrl.Route]: [],
  });
  split = { all: empty(), gateway: empty(), grpc: empty() };
  for (const r of resources) {
    split.all[r.typeUrl].push(r);
    if (keptFor(r, "gateway")) split.gateway[r.typeUrl].push(r);
    if (keptFor(r, "grpc")) split.grpc[r.typeUrl].push(r);
  }
  splits.set(owner, split);
  return split;
}

/** The per-kind lists {@link Translator.translate} filled beside its output. */
const perNode = new WeakMap<SnapshotResources, Record<NodeKind, SnapshotResources>>();

/** Whether a kind of node gets a resource (see {@link forNode}). */
function keptFor(r: XdsResource, kind: NodeKind): boolean {
  if (r.typeUrl === TypeUrl.Listener || r.typeUrl === TypeUrl.Route) {
    return (r.name === INGRESS_NAME) === (kind === "gateway");
  }
  // The gateway's own clusters are `gateway/…`; the gRPC clients' per-fork ones are `shard/…`.
  return !r.name.startsWith(kind === "gateway" ? "shard/" : "gateway/");
}

/** Options of translation. */
export interface TranslateOptions {
  /** Sandbox hosts are `<id>.sandbox.<domain>`; default `shardworks.local`. */
  domain?: string;
  /** Port of Envoy's ingress listener; default 8080 (the EnvoyGateway default). */
  ingressPort?: number;
  /** Address Envoy's ingress listener binds; default `0.0.0.0` (every interface of the pod). */
  ingressHost?: string;
}

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

/** Which HTTP version the gateway speaks to a service's upstream. */
export type UpstreamHttp = "http1" | "http2";
/** `http2` and `grpc` services are HTTP/2 upstream; `http1` (and WebSocket) HTTP/1.1. */
export function upstreamHttp(protocol: ServiceProtocol | undefined): UpstreamHttp {
  return (protocol ?? DEFAULT_SERVICE_PROTOCOL) === "http1" ? "http1" : "http2";
}
/** The gateway's shared ORIGINAL_DST cluster for forks to IP addresses, one per HTTP version. */
export const sharedForkClusterName = (http: UpstreamHttp): string => `gateway/forks/${http}`;
/** The gateway's cluster of a shard's fork to a DNS name. */
export const gatewayForkClusterName = (shard: string, service: string): string =>
  `gateway/shard/${shard}/${service}`;

/** Cluster name of a service's baseline. */
export const baselineClusterName = (service: string): string => `baseline/${service}`;
/** Cluster name of a shard's fork of a service. */
export const forkClusterName = (shard: string, service: string): string =>
  `shard/${shard}/${service}`;
/** Cluster name of a sandbox's exposed guest port. */
export const sandboxClusterName = (id: string, port: string): string => `sandbox/${id}/${port}`;

/** Translate from scratch (the reference the memoizing {@link Translator} must agree with). */
export function translate(state: RoutingState, options: TranslateOptions = {}): SnapshotResources {
  return new Translator(options).translate(state);
}

type Route = Record<string, unknown>;
interface ForkRoutes<T> {
  readonly header: T;
  readonly baggage: T;
}
/** What the gateway needs of one fork: its exact-match entry and, for a DNS fork, its cluster. */
interface GatewayFork {
  readonly http: UpstreamHttp;
  /** `MatchMap { map: { <key>: OnMatch } }`, encoded (a part of the virtual host's matcher). */
  readonly entry: Uint8Array;
  /** The OnMatch as a plain object (for the merged message `consistent()` reads). */
  readonly onMatch: Record<string, unknown>;
  readonly cluster?: XdsResource;
}
interface ShardPart {
  readonly record: ShardRecord;
  readonly clusters: XdsResource[];
  readonly endpoints: XdsResource[];
  /** Service → the header route and the baggage route to this shard's fork of it. */
  readonly routes: ReadonlyMap<string, ForkRoutes<Route>>;
  /** Service → `VirtualHost { routes: [route] }` of each, encoded (parts of the virtual host). */
  readonly routeParts: ReadonlyMap<string, ForkRoutes<Uint8Array>>;
  /** Service → the gateway's entry for this fork, built once per upstream HTTP version. */
  readonly gateway: Map<string, GatewayFork>;
}
interface ServicePart {
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
interface SandboxPart {
  readonly record: SandboxRecord;
  readonly clusters: XdsResource[];
  readonly endpoints: XdsResource[];
  readonly virtualHosts: Record<string, unknown>[];
  readonly ingressPart: Uint8Array;
  readonly ingressHash: string;
  readonly resources: XdsResource[];
}

/** Incremental translation: same output as {@link translate}, reusing unchanged parts. */
export class Translator {
  readonly #domain: string;
  readonly #ingressPort: number;
  readonly #ingressHost: string;
  #shards = new Map<string, ShardPart>();
  /** Service → the parts of the shards forking it, sorted by shard name. */
  readonly #forksByService = new Map<string, ShardPart[]>();
  #services = new Map<string, ServicePart>();
  #sandboxes = new Map<string, SandboxPart>();
  #ingress: { key: unknown[]; resources: XdsResource[] } | undefined;
  readonly #sharedClusters: XdsResource[];

  constructor(options: TranslateOptions = {}) {
    this.#domain = options.domain ?? "shardworks.local";
    this.#ingressPort = options.ingressPort ?? 8080;
    this.#ingressHost = options.ingressHost ?? "0.0.0.0";
    this.#sharedClusters = (["http1", "http2"] as const).map(sharedForkCluster);
  }

  /**
   * Resources for a state. Records are compared by identity: pass the same object for a shard or
   * sandbox that did not change (the controller does), and its resources are reused.
   */
  translate(state: RoutingState): SnapshotResources {
    for (const b of state.baseline) {
      if (RESERVED_SERVICE_NAMES.includes(b.name)) {
        throw new Error(`baseline service name "${b.name}" is reserved; rename the service`);
      }
    }
    const now = state.now?.getTime();
    const live = now === undefined ? state.shards : state.shards.filter((s) => expiry(s) > now);
    // Only the fork lists of services a new, changed or removed shard forks are rebuilt (and only
    // they are sorted): one change among 10,000 shards costs a map lookup per shard, not a sort.
    const shards = new Map<string, ShardPart>();
    const dirty = new Set<string>();
    const added: ShardPart[] = [];
    let kept = 0;
    for (const record of live) {
      const previous = this.#shards.get(record.name);
      if (previous?.record === record && !shards.has(record.name)) {
        shards.set(record.name, previous);
        kept++;
        continue;
      }
      const part = previous?.record === record ? previous : this.#shardPart(record);
      const replaced = shards.get(record.name) ?? previous;
      for (const service of replaced?.routes.keys() ?? []) dirty.add(service);
      for (const service of part.routes.keys()) dirty.add(service);
      shards.set(record.name, part);
      added.push(part);
    }
    if (kept < this.#shards.size) {
      for (const [name, part] of this.#shards) {
        if (shards.get(name) === part) continue;
        for (const service of part.routes.keys()) dirty.add(service);
      }
    }
    this.#shards = shards;
    const forksByService = this.#forksByService;
    for (const service of dirty) {
      const list = (forksByService.get(service) ?? []).filter(
        (p) => shards.get(p.record.name) === p,
      );
      for (const part of added) {
        if (part.routes.has(service) && shards.get(part.record.name) === part) list.push(part);
      }
      list.sort((a, b) => compare(a.record.name, b.record.name));
      if (list.length === 0) forksByService.delete(service);
      else forksByService.set(service, list);
    }

    const services = new Map<string, ServicePart>();
    for (const baseline of [...state.baseline].sort(byName)) {
      const forks = forksByService.get(baseline.name) ?? NO_FORKS;
      const previous = this.#services.get(baseline.name);
      const unchanged =
        previous !== undefined &&
        previous.baseline.destination === baseline.destination &&
        sameHosts(previous.baseline.hosts, baseline.hosts) &&
        upstreamHttp(previous.baseline.protocol) === upstreamHttp(baseline.protocol) &&
        previous.shardParts === forks;
      services.set(baseline.name, unchanged ? previous : this.#servicePart(baseline, forks));
    }
    this.#services = services;

    const sandboxes = new Map<string, SandboxPart>();
    for (const record of [...state.sandboxes].sort((a, b) => compare(a.id, b.id))) {
      if (record.status.phase !== "running" || Object.keys(record.status.endpoints).length === 0) {
        continue;
      }
      const previous = this.#sandboxes.get(record.id);
      sandboxes.set(record.id, previous?.record === record ? previous : this.#sandboxPart(record));
    }
    this.#sandboxes = sandboxes;

    const ingressKey = [...services.values(), ...sandboxes.values()];
    if (
      !this.#ingress ||
      this.#ingress.key.length !== ingressKey.length ||
      this.#ingress.key.some((p, i) => p !== ingressKey[i])
    ) {
      this.#ingress = { key: ingressKey, resources: this.#ingressResources() };
    }

    // Each kind's lists are filled beside the whole (what forNode would filter, in the same
    // order), so the controller does not filter 20,000 resources by name on every change.
    const empty = (): Record<TypeUrl, XdsResource[]> => ({
      [TypeUrl.Cluster]: [],
      [TypeUrl.Endpoint]: [],
      [TypeUrl.Listener]: [],
      [TypeUrl.Route]: [],
    });
    const out = empty();
    const gateway = empty();
    const grpc = empty();
    const lists = { all: out, gateway, grpc };
    const add = (split: Split): void => {
      for (const key of ["all", "gateway", "grpc"] as const) {
        for (const [typeUrl, list] of Object.entries(split[key]) as [TypeUrl, XdsResource[]][]) {
          for (const r of list) lists[key][typeUrl].push(r);
        }
      }
    };
    add(splitOf(this.#sharedClusters, this.#sharedClusters));
    // A fork of a service that is not (or no longer) in the baseline routes nowhere: not sent
    // (only baseline services have a part). Fork clusters `shard/…` are the gRPC clients'.
    // Each part's split is computed once; a change re-splits only the parts it rebuilt.
    for (const part of services.values())
      add(splitOf(part, [...part.resources, ...part.forkResources]));
    for (const part of sandboxes.values()) add(splitOf(part, part.resources));
    add(splitOf(this.#ingress, this.#ingress.resources));
    perNode.set(out, { gateway, grpc });
    return out;
  }

  #shardPart(record: ShardRecord): ShardPart {
    const clusters: XdsResource[] = [];
    const endpoints: XdsResource[] = [];
    const routes = new Map<string, ForkRoutes<Route>>();
    const routeParts = new Map<string, ForkRoutes<Uint8Array>>();
    for (const [service, destination] of Object.entries(record.forks)) {
      const name = forkClusterName(record.name, service);
      const built = clusterResources(name, destination);
      clusters.push(built.cluster);
      if (built.endpoints) endpoints.push(built.endpoints);
      const forkRoutes = {
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
      routes.set(service, forkRoutes);
      routeParts.set(service, {
        header: encodeVirtualHost({ routes: [forkRoutes.header] }),
        baggage: encodeVirtualHost({ routes: [forkRoutes.baggage] }),
      });
    }
    return { record, clusters, endpoints, routes, routeParts, gateway: new Map() };
  }

  /** The gateway's entry for `part`'s fork of `service` (memoized per HTTP version). */
  #gatewayFork(part: ShardPart, service: string, baselineHttp: UpstreamHttp): GatewayFork {
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

  #servicePart(baseline: BaselineService, forks: readonly ShardPart[]): ServicePart {
    const clusterName = baselineClusterName(baseline.name);
    const http = upstreamHttp(baseline.protocol);
    const built = clusterResources(clusterName, baseline.destination, http);
    const virtualHost = {
      name: baseline.name,
      domains: [baseline.name, `${baseline.name}.${this.#domain}`, ...(baseline.hosts ?? [])],
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

    const gatewayForks = forks.map((p) => this.#gatewayFork(p, baseline.name, http));
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

  #sandboxPart(record: SandboxRecord): SandboxPart {
    const host = `${record.id}.sandbox.${this.#domain}`;
    const ports = Object.keys(record.status.endpoints).sort((a, b) => Number(a) - Number(b));
    const clusters: XdsResource[] = [];
    const endpoints: XdsResource[] = [];
    const virtualHosts: Record<string, unknown>[] = [];
    for (const [index, port] of ports.entries()) {
      const name = sandboxClusterName(record.id, port);
      const built = clusterResources(name, record.status.endpoints[port] ?? "");
      clusters.push(built.cluster);
      if (built.endpoints) endpoints.push(built.endpoints);
      const domains = [`${port}.${host}`, ...(index === 0 ? [host] : [])];
      virtualHosts.push({
        name: `sandbox/${record.id}/${port}`,
        domains,
        routes: [
          { name: `sandbox/${record.id}/${port}`, match: { prefix: "" }, route: { cluster: name } },
        ],
      });
    }
    const routeName = `sandbox/${record.id}`;
    const ingressPart = pack(TypeUrl.Route, { virtual_hosts: virtualHosts }).value;
    const resources = [
      ...clusters,
      ...endpoints,
      makeResourceFromParts(
        TypeUrl.Route,
        routeName,
        { name: routeName, virtual_hosts: virtualHosts },
        [pack(TypeUrl.Route, { name: routeName }).value, ingressPart],
      ),
      apiListener(host, routeName),
    ];
    return {
      record,
      clusters,
      endpoints,
      virtualHosts,
      ingressPart,
      ingressHash: hashOf(ingressPart),
      resources,
    };
  }

  #ingressResources(): XdsResource[] {
    const services = [...this.#services.values()];
    const sandboxes = [...this.#sandboxes.values()];
    const virtualHosts = [
      ...services.map((p) => p.gatewayVirtualHost),
      ...sandboxes.flatMap((p) => p.virtualHosts),
    ];
    const hcm = pack(ExtensionTypeUrl.HttpConnectionManager, {
      stat_prefix: INGRESS_NAME,
      codec_type: "AUTO",
      strip_any_host_port: true,
      rds: { config_source: ADS_SOURCE, route_config_name: INGRESS_NAME },
      // WebSocket (HTTP/1.1 Upgrade) is proxied; without this Envoy answers 403.
      upgrade_configs: [{ upgrade_type: "websocket" }],
      // The routing key is read from baggage once per request, before the route lookup.
      http_filters: [routingKeyFilter(), ROUTER_FILTER()],
    });
    const head = pack(TypeUrl.Route, { name: INGRESS_NAME }).value;
    return [
      makeResourceFromParts(
        TypeUrl.Route,
        INGRESS_NAME,
        { name: INGRESS_NAME, virtual_hosts: virtualHosts },
        [head, ...services.map((p) => p.ingressPart), ...sandboxes.map((p) => p.ingressPart)],
        [
          hashOf(head),
          ...services.map((p) => p.ingressHash),
          ...sandboxes.map((p) => p.ingressHash),
        ],
      ),
      makeResource(TypeUrl.Listener, INGRESS_NAME, {
        name: INGRESS_NAME,
        address: {
          socket_address: { address: this.#ingressHost, port_value: this.#ingressPort },
        },
        filter_chains: [
          {
            filters: [{ name: "envoy.filters.network.http_connection_manager", typed_config: hcm }],
          },
        ],
      }),
    ];
  }
}

const NO_FORKS: readonly ShardPart[] = [];

function hashOf(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** A shard's `expiresAt` in ms, parsed once per (immutable) record. */
const expiries = new WeakMap<ShardRecord, number>();
function expiry(record: ShardRecord): number {
  let at = expiries.get(record);
  if (at === undefined) expiries.set(record, (at = Date.parse(record.expiresAt)));
  return at;
}

const ADS_SOURCE = { ads: {}, resource_api_version: "V3" };

/**
 * HTTP/2 upstreams may carry long-lived streams (gRPC streaming), so their routes have no
 * per-request timeout (the listener's stream idle timeout still applies); HTTP/1.1 routes keep
 * Envoy's default of 15 s.
 */
function routeTimeout(http: UpstreamHttp): Record<string, unknown> {
  return http === "http2" ? { timeout: { seconds: 0 } } : {};
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

function messageType(name: string): protobuf.Type {
  return envoyRoot().lookupType(name);
}

/** Encode a message of Envoy's (or xDS') protos by full name, field names checked. */
function encodeMessage(typeName: string, fields: Record<string, unknown>): Uint8Array {
  const type = messageType(typeName);
  assertKnownFields(type, fields, type.name);
  return type.encode(type.fromObject(fields)).finish();
}

/** One length-delimited field `id` holding already-encoded bytes. */
function lengthDelimited(id: number, bytes: Uint8Array): Uint8Array {
  return protobuf.Writer.create()
    .uint32((id << 3) | 2)
    .bytes(bytes)
    .finish();
}

/** Encode (part of) a VirtualHost with Envoy's type, field names checked. */
function encodeVirtualHost(fields: Record<string, unknown>): Uint8Array {
  return encodeMessage("envoy.config.route.v3.VirtualHost", fields);
}

/** `RouteConfiguration { virtual_hosts: [<encoded virtual host>] }`, via protobufjs' writer. */
function virtualHostsPart(virtualHost: Uint8Array): Uint8Array {
  const field = envoyRoot().lookupType("envoy.config.route.v3.RouteConfiguration").fields
    .virtual_hosts!;
  return lengthDelimited(field.id, virtualHost);
}

let routerFilter: Record<string, unknown> | undefined;
function ROUTER_FILTER(): Record<string, unknown> {
  routerFilter ??= {
    name: "envoy.filters.http.router",
    typed_config: pack(ExtensionTypeUrl.Router, {}),
  };
  return routerFilter;
}

/** A Listener for gRPC xDS clients: `xds:///<name>` loads route configuration `routeName`. */
function apiListener(name: string, routeName: string): XdsResource {
  const hcm = pack(ExtensionTypeUrl.HttpConnectionManager, {
    stat_prefix: name,
    rds: { config_source: ADS_SOURCE, route_config_name: routeName },
    http_filters: [ROUTER_FILTER()],
  });
  return makeResource(TypeUrl.Listener, name, { name, api_listener: { api_listener: hcm } });
}

/** `typed_extension_protocol_options` making a cluster speak HTTP/2 (prior knowledge) upstream. */
function protocolOptions(http: UpstreamHttp | undefined): Record<string, unknown> {
  if (http !== "http2") return {};
  return {
    typed_extension_protocol_options: {
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": pack(
        ExtensionTypeUrl.HttpProtocolOptions,
        { explicit_http_config: { http2_protocol_options: {} } },
      ),
    },
  };
}

/**
 * The gateway's shared cluster for forks to IP addresses: ORIGINAL_DST takes the upstream address
 * from the `x-shardworks-upstream` header each fork route sets, so 10,000 forks cost 10,000
 * routes and no cluster each (hosts are created on first use and dropped when idle).
 */
function sharedForkCluster(http: UpstreamHttp): XdsResource {
  const name = sharedForkClusterName(http);
  return makeResource(TypeUrl.Cluster, name, {
    name,
    type: "ORIGINAL_DST",
    lb_policy: "CLUSTER_PROVIDED",
    connect_timeout: { seconds: 5 },
    original_dst_lb_config: { use_http_header: true, http_header_name: UPSTREAM_HEADER },
    ...protocolOptions(http),
  });
}

/**
 * A cluster for `host:port`. An IPv4 address gets an EDS cluster and its ClusterLoadAssignment
 * (pushed over ADS); a DNS name gets a LOGICAL_DNS cluster, resolved by the client. `http2`
 * makes it speak HTTP/2 upstream (gRPC xDS clients ignore the option; they always do).
 */
function clusterResources(
  name: string,
  destination: string,
  http?: UpstreamHttp,
): { cluster: XdsResource; endpoints?: XdsResource } {
  const colon = destination.lastIndexOf(":");
  const host = destination.slice(0, colon);
  const port = Number(destination.slice(colon + 1));
  const lbEndpoints = [
    { endpoint: { address: { socket_address: { address: host, port_value: port } } } },
  ];
  const assignment = {
    cluster_name: name,
    endpoints: [{ locality: {}, load_balancing_weight: { value: 1 }, lb_endpoints: lbEndpoints }],
  };
  const common = {
    name,
    connect_timeout: { seconds: 5 },
    lb_policy: "ROUND_ROBIN",
    ...protocolOptions(http),
  };
  if (isIPv4(host)) {
    return {
      cluster: makeResource(TypeUrl.Cluster, name, {
        ...common,
        type: "EDS",
        eds_cluster_config: { eds_config: ADS_SOURCE, service_name: name },
      }),
      endpoints: makeResource(TypeUrl.Endpoint, name, assignment),
    };
  }
  return {
    cluster: makeResource(TypeUrl.Cluster, name, {
      ...common,
      type: "LOGICAL_DNS",
      // IPv4 first, IPv6 if a name has no A record (Envoy's default prefers IPv6).
      dns_lookup_family: "V4_PREFERRED",
      load_assignment: assignment,
    }),
  };
}

/** Whether two baselines' extra host lists are equal (absent = empty). */
function sameHosts(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  const x = a ?? [];
  const y = b ?? [];
  return x.length === y.length && x.every((h, i) => h === y[i]);
}

function byName(a: { name: string }, b: { name: string }): number {
  return compare(a.name, b.name);
}
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
