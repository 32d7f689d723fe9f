/**
 * An immutable, versioned set of xDS resources (go-control-plane `pkg/cache/v3/snapshot.go`). Each
 * resource type has its own version, derived from the content: the same resources always give the
 * same version, so two controllers that see the same state serve the same versions, and a change
 * that leaves clusters alone does not re-send clusters.
 */
import { createHash } from "node:crypto";
import { ExtensionTypeUrl, pack, PUSH_ORDER, TypeUrl, unpack, type AnyMessage } from "./protos";

/** One xDS resource: its name, the message (plain snake_case object) and its encoded `Any`. */
export interface XdsResource {
  readonly name: string;
  readonly typeUrl: TypeUrl;
  /** The message as given to the encoder (read by `consistent()`). */
  readonly message: Readonly<Record<string, unknown>>;
  readonly any: AnyMessage;
  /** sha256 (hex) of the encoded message. */
  readonly hash: string;
}

/** Encode a resource once; keep the result (translation memoizes resources, so this runs once each). */
export function makeResource(
  typeUrl: TypeUrl,
  name: string,
  message: Record<string, unknown>,
): XdsResource {
  const any = pack(typeUrl, message);
  const hash = createHash("sha256").update(any.value).digest("hex");
  return Object.freeze({ name, typeUrl, message: Object.freeze(message), any, hash });
}

/**
 * A resource whose encoding is the concatenation of already-encoded parts of the same message
 * type. Protobuf defines concatenated encodings as the merge of the messages (repeated fields
 * append), so a RouteConfiguration of 10,000 virtual-host routes is re-assembled from the memoized
 * encoding of each virtual host instead of re-encoding all of them. `message` must be the merged
 * message (it is what `consistent()` reads); a unit test checks the bytes equal a full encode.
 */
export function makeResourceFromParts(
  typeUrl: TypeUrl,
  name: string,
  message: Record<string, unknown>,
  parts: readonly Uint8Array[],
): XdsResource {
  const value = Buffer.concat(parts);
  const any = { type_url: typeUrl, value };
  const hash = createHash("sha256").update(value).digest("hex");
  return Object.freeze({ name, typeUrl, message: Object.freeze(message), any, hash });
}

/** Resources of a snapshot, by type. */
export type SnapshotResources = Readonly<Record<TypeUrl, readonly XdsResource[]>>;

/** An immutable, versioned set of resources for one node (or group of nodes). */
export class Snapshot {
  readonly #byType: ReadonlyMap<TypeUrl, ReadonlyMap<string, XdsResource>>;
  readonly #versions: ReadonlyMap<TypeUrl, string>;
  /** The lists given, per type (so a successor given the same list reuses this type's work). */
  readonly #inputs = new Map<TypeUrl, readonly XdsResource[]>();

  /**
   * `previous` (optional) is the snapshot this one replaces: a type whose resource list holds the
   * same resources (name and content hash) in the same order reuses its sorted map and version
   * instead of sorting and hashing every resource again (an unchanged cluster costs a comparison).
   */
  constructor(resources: Partial<SnapshotResources>, previous?: Snapshot) {
    const byType = new Map<TypeUrl, ReadonlyMap<string, XdsResource>>();
    const versions = new Map<TypeUrl, string>();
    for (const typeUrl of PUSH_ORDER) {
      const given = resources[typeUrl] ?? [];
      this.#inputs.set(typeUrl, given);
      const before = previous === undefined ? undefined : previous.#inputs.get(typeUrl);
      if (
        previous &&
        before &&
        before.length === given.length &&
        before.every((r, i) => {
          const g = given[i]!;
          return r === g || (r.name === g.name && r.hash === g.hash);
        })
      ) {
        byType.set(typeUrl, previous.resources(typeUrl));
        versions.set(typeUrl, previous.version(typeUrl));
        continue;
      }
      const list = [...given].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const map = new Map<string, XdsResource>();
      const digest = createHash("sha256");
      for (const resource of list) {
        if (resource.typeUrl !== typeUrl) {
          throw new Error(`resource ${resource.name} is a ${resource.typeUrl}, not a ${typeUrl}`);
        }
        if (map.has(resource.name)) throw new Error(`duplicate ${typeUrl} named ${resource.name}`);
        map.set(resource.name, resource);
        digest.update(resource.name).update("\0").update(resource.hash).update("\0");
      }
      byType.set(typeUrl, map);
      versions.set(typeUrl, digest.digest("hex").slice(0, 16));
    }
    this.#byType = byType;
    this.#versions = versions;
  }

  /** The version of one resource type (content-derived). */
  version(typeUrl: TypeUrl): string {
    return this.#versions.get(typeUrl) ?? "";
  }

  /** The resources of one type, by name. */
  resources(typeUrl: TypeUrl): ReadonlyMap<string, XdsResource> {
    return this.#byType.get(typeUrl) ?? new Map<string, XdsResource>();
  }

  /**
   * What makes this snapshot unsafe to serve: a route to a missing cluster, a listener naming a
   * missing route configuration, an EDS cluster without its load assignment. Empty = consistent.
   */
  inconsistencies(): string[] {
    const problems: string[] = [];
    const clusters = this.resources(TypeUrl.Cluster);
    const endpoints = this.resources(TypeUrl.Endpoint);
    const routes = this.resources(TypeUrl.Route);
    for (const cluster of clusters.values()) {
      const message = cluster.message as ClusterShape;
      if (message.type !== "EDS") continue;
      const serviceName = message.eds_cluster_config?.service_name || cluster.name;
      if (!endpoints.has(serviceName)) {
        problems.push(`EDS cluster ${cluster.name} has no ClusterLoadAssignment "${serviceName}"`);
      }
    }
    for (const route of routes.values()) {
      for (const { vhost, cluster } of clusterReferences(route)) {
        if (!clusters.has(cluster)) {
          problems.push(
            `route configuration ${route.name}, virtual host ${vhost}: cluster ${cluster} does not exist`,
          );
        }
      }
    }
    for (const listener of this.resources(TypeUrl.Listener).values()) {
      for (const name of rdsNames(listener.message)) {
        if (!routes.has(name)) {
          problems.push(`listener ${listener.name}: route configuration ${name} does not exist`);
        }
      }
    }
    return problems;
  }

  /** True when {@link inconsistencies} is empty. */
  consistent(): boolean {
    return this.inconsistencies().length === 0;
  }
}

interface ClusterShape {
  type?: string;
  eds_cluster_config?: { service_name?: string };
}
interface RouteShape {
  route?: { cluster?: string };
}
interface OnMatchShape {
  action?: { typed_config?: AnyMessage };
}
interface MatcherShape {
  matcher_tree?: { exact_match_map?: { map?: Record<string, OnMatchShape> } };
  on_no_match?: OnMatchShape;
}
interface RouteConfigurationShape {
  virtual_hosts?: { name: string; routes?: RouteShape[]; matcher?: MatcherShape }[];
}

/** The clusters a RouteConfiguration's routes name, per resource (resources are immutable). */
const references = new WeakMap<XdsResource, readonly { vhost: string; cluster: string }[]>();

function clusterReferences(route: XdsResource): readonly { vhost: string; cluster: string }[] {
  const cached = references.get(route);
  if (cached) return cached;
  const found: { vhost: string; cluster: string }[] = [];
  for (const vhost of (route.message as RouteConfigurationShape).virtual_hosts ?? []) {
    const add = (r: RouteShape): void => {
      const cluster = r.route?.cluster;
      if (cluster !== undefined) found.push({ vhost: vhost.name, cluster });
    };
    for (const r of vhost.routes ?? []) add(r);
    for (const r of matcherRoutes(vhost.matcher)) add(r);
  }
  references.set(route, found);
  return found;
}

/** Decoded Route actions, by the identity of their (memoized) packed Any: decoded once each. */
const decodedActions = new WeakMap<AnyMessage, RouteShape>();

/** The Route actions of a virtual host's exact-match matcher (the gateway's form). */
function matcherRoutes(matcher: MatcherShape | undefined): RouteShape[] {
  if (!matcher) return [];
  const actions = [
    ...Object.values(matcher.matcher_tree?.exact_match_map?.map ?? {}),
    ...(matcher.on_no_match ? [matcher.on_no_match] : []),
  ];
  return actions.flatMap((onMatch) => {
    const any = onMatch.action?.typed_config;
    if (any?.type_url !== ExtensionTypeUrl.Route) return [];
    let route = decodedActions.get(any);
    if (!route) decodedActions.set(any, (route = unpack(any) as RouteShape));
    return [route];
  });
}
interface ListenerShape {
  api_listener?: { api_listener?: AnyMessage };
  filter_chains?: { filters?: { typed_config?: AnyMessage }[] }[];
}

/** The route configurations a listener's HttpConnectionManagers load over RDS. */
function rdsNames(listener: ListenerShape): string[] {
  const packed = [
    listener.api_listener?.api_listener,
    ...(listener.filter_chains ?? []).flatMap((c) => (c.filters ?? []).map((f) => f.typed_config)),
  ];
  return packed
    .filter((a): a is AnyMessage => a?.type_url === ExtensionTypeUrl.HttpConnectionManager)
    .map((a) => (unpack(a) as { rds?: { route_config_name?: string } }).rds?.route_config_name)
    .filter((n): n is string => n !== undefined);
}
