/** Which resources each kind of xDS node gets: the Envoy gateway, or a gRPC xDS client. */
import { TypeUrl } from "../xds/protos";
import type { SnapshotResources, XdsResource } from "../xds/resource";
import { INGRESS_NAME } from "./names";

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

/** Resources by type. */
export type Lists = Record<TypeUrl, XdsResource[]>;
/** A part's resources, all and per kind of node. */
export interface Split {
  readonly all: Lists;
  readonly gateway: Lists;
  readonly grpc: Lists;
}
const splits = new WeakMap<object, Split>();
/** `resources` (the part `owner`'s) by type, all and per kind; memoized per (immutable) part. */
export function splitOf(owner: object, resources: readonly XdsResource[]): Split {
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
export const perNode = new WeakMap<SnapshotResources, Record<NodeKind, SnapshotResources>>();

/** Whether a kind of node gets a resource (see {@link forNode}). */
function keptFor(r: XdsResource, kind: NodeKind): boolean {
  if (r.typeUrl === TypeUrl.Listener || r.typeUrl === TypeUrl.Route) {
    return (r.name === INGRESS_NAME) === (kind === "gateway");
  }
  // The gateway's own clusters are `gateway/…`; the gRPC clients' per-fork ones are `shard/…`.
  return !r.name.startsWith(kind === "gateway" ? "shard/" : "gateway/");
}
