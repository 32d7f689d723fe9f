/**
 * The Envoy bootstrap of the edge gateway. Its only dynamic source is ADS (one gRPC stream to the
 * routing controller): listeners, routes, clusters and endpoints all come from there. The admin
 * interface listens on 127.0.0.1 only, so nothing outside the pod can reach it.
 */

/** What the bootstrap needs to know. */
export interface EnvoyBootstrapOptions {
  /** Envoy node id: the key of the routing controller's snapshot cache. */
  nodeId: string;
  /** Envoy node cluster (service cluster name). */
  cluster: string;
  /** Host of the routing controller's xDS server. */
  adsHost: string;
  /** Port of the routing controller's xDS server. */
  adsPort: number;
  /** Port of the admin interface, bound to 127.0.0.1. */
  adminPort: number;
}

/** `re2.max_program_size.error_level` the gateway runs with (Envoy's default is 100). */
export const RE2_MAX_PROGRAM_SIZE = 1000;

/** Envoy node id of the gateway: the routing controller serves it the `ingress` snapshot. */
export const GATEWAY_NODE_ID = "shardworks-gateway";

/** The static cluster that carries the ADS stream. */
export const XDS_CLUSTER = "xds_cluster";

/** Envoy v3 bootstrap (JSON) whose only dynamic source is ADS over gRPC to the routing controller. */
export function envoyBootstrap(options: EnvoyBootstrapOptions): Record<string, unknown> {
  const { nodeId, cluster, adsHost, adsPort, adminPort } = options;
  const ads = { ads: {}, resource_api_version: "V3" };
  return {
    node: { id: nodeId, cluster },
    // Envoy refuses a route whose regex compiles to an RE2 program larger than this runtime value
    // (default 100) and the whole `ingress` route table with it. Routing keys are capped so the
    // baggage regex stays within 100 (MAX_ROUTING_KEY_LENGTH); this margin keeps one unexpected
    // pattern from freezing every shard's routes.
    layered_runtime: {
      layers: [
        {
          name: "shardworks-static",
          static_layer: {
            "re2.max_program_size.error_level": RE2_MAX_PROGRAM_SIZE,
            "re2.max_program_size.warn_level": 100,
          },
        },
      ],
    },
    admin: {
      address: { socket_address: { address: "127.0.0.1", port_value: adminPort } },
    },
    dynamic_resources: {
      ads_config: {
        api_type: "GRPC",
        transport_api_version: "V3",
        grpc_services: [{ envoy_grpc: { cluster_name: XDS_CLUSTER } }],
        set_node_on_first_message_only: true,
      },
      cds_config: ads,
      lds_config: ads,
    },
    static_resources: {
      clusters: [
        {
          name: XDS_CLUSTER,
          type: "STRICT_DNS",
          connect_timeout: "5s",
          typed_extension_protocol_options: {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
              "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          load_assignment: {
            cluster_name: XDS_CLUSTER,
            endpoints: [
              {
                lb_endpoints: [
                  {
                    endpoint: {
                      address: { socket_address: { address: adsHost, port_value: adsPort } },
                    },
                  },
                ],
              },
            ],
          },
        },
      ],
    },
  };
}
