/** The gateway's `ingress` listener and route configuration, assembled from every part's share. */
import { routingKeyFilter } from "../routing-key-filter";
import { ExtensionTypeUrl, pack, TypeUrl } from "../xds/protos";
import { makeResource, makeResourceFromParts, type XdsResource } from "../xds/resource";
import { ADS_SOURCE, ROUTER_FILTER } from "./envoy-resources";
import { INGRESS_NAME } from "./names";
import type { SandboxPart } from "./sandbox-part";
import type { ServicePart } from "./service-part";
import { hashOf } from "./wire";

/** The ingress listener (bound to `host:port`) and its route configuration, parts in order. */
export function ingressResources(
  services: readonly ServicePart[],
  sandboxes: readonly SandboxPart[],
  host: string,
  port: number,
): XdsResource[] {
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
      [hashOf(head), ...services.map((p) => p.ingressHash), ...sandboxes.map((p) => p.ingressHash)],
    ),
    makeResource(TypeUrl.Listener, INGRESS_NAME, {
      name: INGRESS_NAME,
      address: {
        socket_address: { address: host, port_value: port },
      },
      filter_chains: [
        {
          filters: [{ name: "envoy.filters.network.http_connection_manager", typed_config: hcm }],
        },
      ],
    }),
  ];
}
