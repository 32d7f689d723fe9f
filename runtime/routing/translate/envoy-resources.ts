/** Envoy clusters, load assignments and listeners built from a destination or a route name. */
import { isIPv4 } from "node:net";
import { ExtensionTypeUrl, pack, TypeUrl } from "../xds/protos";
import { makeResource, type XdsResource } from "../xds/resource";
import { sharedForkClusterName, UPSTREAM_HEADER, type UpstreamHttp } from "./names";

/** Config source: over the same ADS stream. */
export const ADS_SOURCE = { ads: {}, resource_api_version: "V3" };

/**
 * HTTP/2 upstreams may carry long-lived streams (gRPC streaming), so their routes have no
 * per-request timeout (the listener's stream idle timeout still applies); HTTP/1.1 routes keep
 * Envoy's default of 15 s.
 */
export function routeTimeout(http: UpstreamHttp): Record<string, unknown> {
  return http === "http2" ? { timeout: { seconds: 0 } } : {};
}

let routerFilter: Record<string, unknown> | undefined;
/** The router HTTP filter, built on first use. */
export function ROUTER_FILTER(): Record<string, unknown> {
  routerFilter ??= {
    name: "envoy.filters.http.router",
    typed_config: pack(ExtensionTypeUrl.Router, {}),
  };
  return routerFilter;
}

/** A Listener for gRPC xDS clients: `xds:///<name>` loads route configuration `routeName`. */
export function apiListener(name: string, routeName: string): XdsResource {
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
export function sharedForkCluster(http: UpstreamHttp): XdsResource {
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
export function clusterResources(
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
