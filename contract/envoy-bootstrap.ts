/**
 * The Envoy bootstrap of the edge gateway. Its only dynamic source is ADS (one incremental gRPC
 * stream to the routing controller): listeners, route scopes, routes, clusters and endpoints all
 * come from there. The admin
 * interface listens on 127.0.0.1 unless told otherwise, so nothing outside the pod can reach it.
 */
import { isIP } from "node:net";
import { z } from "zod";

/** Longest wait between two attempts to reach the routing controller. */
export const ADS_RETRY_MAX_INTERVAL_MS = 500;

const port = z.number().int().min(0).max(65535, { message: "must be a port (0-65535)" });
const ipAddress = z.string().refine((a) => isIP(a) !== 0, {
  message: 'must be an IP address, e.g. "127.0.0.1" (admin) or "0.0.0.0" (listener)',
});

/** What the bootstrap needs to know, checked (each error names the field). */
export const envoyBootstrapOptionsSchema = z.strictObject({
  /** Envoy node id: the key of the routing controller's snapshot cache. */
  nodeId: z.string().min(1),
  /** Envoy node cluster (service cluster name). */
  cluster: z.string().min(1),
  /** Host of the routing controller's xDS server. */
  adsHost: z.string().min(1),
  /** Port of the routing controller's xDS server. */
  adsPort: port.min(1),
  /** Port of the admin interface (0 = any free port, for tests). */
  adminPort: port,
  /** Address of the admin interface; default 127.0.0.1 (loopback only). */
  adminHost: ipAddress.default("127.0.0.1"),
  /**
   * ADS flavour: `delta` (default: a change sends only the resources it changed, ADR 0016) or
   * `sotw` (state of the world: every subscribed resource again on each change).
   */
  adsProtocol: z
    .enum(["delta", "sotw"], { message: 'must be "delta" (incremental, the default) or "sotw"' })
    .default("delta"),
});
/** Options of {@link envoyBootstrap} (`adminHost` and `adsProtocol` may be left out). */
export type EnvoyBootstrapOptions = z.input<typeof envoyBootstrapOptionsSchema>;

/** Envoy node id of the gateway: the routing controller serves it the `ingress` snapshot. */
export const GATEWAY_NODE_ID = "shardworks-gateway";

/** The static cluster that carries the ADS stream. */
export const XDS_CLUSTER = "xds_cluster";

/**
 * Envoy v3 bootstrap (JSON) whose only dynamic source is ADS over gRPC to the routing controller.
 * Invalid options throw a zod error naming the field.
 */
export function envoyBootstrap(input: EnvoyBootstrapOptions): Record<string, unknown> {
  const { nodeId, cluster, adsHost, adsPort, adminPort, adminHost, adsProtocol } =
    envoyBootstrapOptionsSchema.parse(input);
  const ads = { ads: {}, resource_api_version: "V3" };
  return {
    node: { id: nodeId, cluster },
    admin: {
      address: { socket_address: { address: adminHost, port_value: adminPort } },
    },
    dynamic_resources: {
      ads_config: {
        // Incremental: a shard change sends Envoy the one route configuration it changed, not
        // all of them again (ADR 0016).
        api_type: adsProtocol === "delta" ? "DELTA_GRPC" : "GRPC",
        transport_api_version: "V3",
        // Envoy's default backoff after a lost ADS stream grows to 30 s: after a long controller
        // outage it reconnected ~16 s after the controller was back. Capped at 0.5 s (jittered), it
        // converges within about a second of the controller answering again.
        grpc_services: [
          {
            envoy_grpc: {
              cluster_name: XDS_CLUSTER,
              retry_policy: {
                retry_back_off: {
                  base_interval: "0.1s",
                  max_interval: `${ADS_RETRY_MAX_INTERVAL_MS / 1000}s`,
                },
              },
            },
          },
        ],
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
          connect_timeout: "1s",
          // A controller that vanished without closing (node lost) is found by HTTP/2 pings.
          typed_extension_protocol_options: {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
              "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
              explicit_http_config: {
                http2_protocol_options: {
                  connection_keepalive: { interval: "10s", timeout: "5s" },
                },
              },
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
