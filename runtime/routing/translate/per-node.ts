/** Which resources each kind of xDS node gets: the Envoy gateway, or a gRPC xDS client. */
import { PUSH_ORDER, TypeUrl } from "../xds/protos";
import type { SnapshotResources, XdsResource } from "../xds/resource";
import { INGRESS_NAME, ingressRouteName } from "./names";

/** Which kind of xDS client a node is: the Envoy gateway, or a gRPC xDS client. */
export type NodeKind = "gateway" | "grpc";

/**
 * The resources one kind of node gets. The gateway: clusters, endpoints, the `ingress` listener
 * and its route configurations (`ingress/<scope>`). gRPC clients: clusters, endpoints, the api_listeners and the
 * per-service (and per-sandbox) route configurations.
 */
export function forNode(resources: SnapshotResources, kind: NodeKind): SnapshotResources {
  const split = perNode.get(resources);
  if (split) return split[kind];
  const kept = emptyLists();
  for (const typeUrl of PUSH_ORDER) {
    for (const r of resources[typeUrl] ?? []) if (keptFor(r, kind)) kept[typeUrl].push(r);
  }
  return kept;
}

/** An empty list per resource type. */
export function emptyLists(): Lists {
  return Object.fromEntries(PUSH_ORDER.map((t) => [t, [] as XdsResource[]])) as Lists;
}

/** Resources by type. */
export type Lists = Record<TypeUrl, XdsResource[]>;
/** A part's resources, all and per kind of node. */
export interface Split {
  readonly all: Lists;
  readonly gateway: Lists;
  readonly grpc: Lists;
}
const splits = new WeakMap<object, Split>();
/**
 * The part `owner`'s resources by type, all and per kind; memoized per (immutable) part, so
 * `resources` is called only the first time.
 */
export function splitOf(owner: object, resources: () => readonly XdsResource[]): Split {
  let split = splits.get(owner);
  if (split) return split;
  split = { all: emptyLists(), gateway: emptyLists(), grpc: emptyLists() };
  for (const r of resources()) {
    split.all[r.typeUrl].push(r);
    if (keptFor(r, "gateway")) split.gateway[r.typeUrl].push(r);
    if (keptFor(r, "grpc")) split.grpc[r.typeUrl].push(r);
  }
  splits.set(owner, split);
  return split;
}

/** The per-kind lists {@link Translator.translate} filled beside its output. */
export const perNode = new WeakMap<SnapshotResources, Record<NodeKind, SnapshotResources>>();

/** Whether a kind of node gets a resource (see {@link forNode}). */
function keptFor(r: XdsResource, kind: NodeKind): boolean {
  if (r.typeUrl === TypeUrl.ScopedRoute) return kind === "gateway";
  if (r.typeUrl === TypeUrl.Listener || r.typeUrl === TypeUrl.Route) {
    const ingress = r.name === INGRESS_NAME || r.name.startsWith(ingressRouteName(""));
    return ingress === (kind === "gateway");
  }
  // The gateway's own clusters are `gateway/…`; the gRPC clients' per-fork ones are `shard/…`.
  return !r.name.startsWith(kind === "gateway" ? "shard/" : "gateway/");
}
