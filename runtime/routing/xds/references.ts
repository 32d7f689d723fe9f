/**
 * What a resource names of other resources, read from its message: the load assignment an EDS
 * cluster needs, the clusters a route configuration's virtual hosts route to (plain routes and the
 * gateway's exact-match matcher), the route configurations a listener loads over RDS. Memoized
 * per (immutable) resource, virtual host or packed action, so a snapshot's consistency check
 * walks only what changed.
 */
import { ExtensionTypeUrl, TypeUrl, unpack, type AnyMessage } from "./protos";
import type { XdsResource } from "./resource";

/** The load assignment an EDS cluster needs (undefined: not an EDS cluster). */
export function edsServiceName(cluster: XdsResource): string | undefined {
  const message = cluster.message as ClusterShape;
  if (message.type !== "EDS") return undefined;
  return message.eds_cluster_config?.service_name || cluster.name;
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

/** A virtual host of a route configuration, as `consistent()` reads it. */
export type VirtualHostShape = NonNullable<RouteConfigurationShape["virtual_hosts"]>[number];

/** The virtual hosts of a route configuration (none for undefined). */
export function virtualHosts(route: XdsResource | undefined): readonly VirtualHostShape[] {
  return (route?.message as RouteConfigurationShape | undefined)?.virtual_hosts ?? [];
}

/**
 * The clusters a virtual host's routes name, per virtual host object: translation reuses the
 * (frozen) message of an unchanged service's virtual host, so a RouteConfiguration rebuilt for one
 * change walks only the virtual host that changed.
 */
const vhostReferences = new WeakMap<object, readonly string[]>();
export function vhostClusters(vhost: VirtualHostShape): readonly string[] {
  const cached = vhostReferences.get(vhost);
  if (cached) return cached;
  const found: string[] = [];
  const add = (r: RouteShape): void => {
    const cluster = r.route?.cluster;
    if (cluster !== undefined) found.push(cluster);
  };
  for (const r of vhost.routes ?? []) add(r);
  for (const r of matcherRoutes(vhost.matcher)) add(r);
  vhostReferences.set(vhost, found);
  return found;
}

/** Each cluster a route configuration names, with the virtual host naming it. */
export function clusterReferences(route: XdsResource): { vhost: string; cluster: string }[] {
  return virtualHosts(route).flatMap((vhost) =>
    vhostClusters(vhost).map((cluster) => ({ vhost: vhost.name, cluster })),
  );
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

interface HcmShape {
  rds?: { route_config_name?: string };
  scoped_routes?: {
    scoped_route_configurations_list?: {
      scoped_route_configurations?: { route_configuration_name?: string }[];
    };
  };
}

/**
 * The route configurations a listener's HttpConnectionManagers, or a route scope (SRDS), load over
 * RDS (memoized).
 */
const rdsByListener = new WeakMap<XdsResource, readonly string[]>();
export function rdsNames(resource: XdsResource): readonly string[] {
  const cached = rdsByListener.get(resource);
  if (cached) return cached;
  if (resource.typeUrl === TypeUrl.ScopedRoute) {
    const name = (resource.message as { route_configuration_name?: string })
      .route_configuration_name;
    const names = name ? [name] : [];
    rdsByListener.set(resource, names);
    return names;
  }
  const listener = resource.message as ListenerShape;
  const packed = [
    listener.api_listener?.api_listener,
    ...(listener.filter_chains ?? []).flatMap((c) => (c.filters ?? []).map((f) => f.typed_config)),
  ];
  const names = packed
    .filter((a): a is AnyMessage => a?.type_url === ExtensionTypeUrl.HttpConnectionManager)
    .flatMap((a) => {
      const hcm = unpack(a) as HcmShape;
      const scoped = hcm.scoped_routes?.scoped_route_configurations_list;
      return [
        hcm.rds?.route_config_name,
        ...(scoped?.scoped_route_configurations ?? []).map((s) => s.route_configuration_name),
      ];
    })
    .filter((n): n is string => n !== undefined && n !== "");
  rdsByListener.set(resource, names);
  return names;
}
