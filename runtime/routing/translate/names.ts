/** The names translation gives Envoy's resources: headers, the ingress, and cluster names. */
import { DEFAULT_SERVICE_PROTOCOL, type ServiceProtocol } from "../../lib/model";

/** The header the gateway's fork routes set to the fork's `ip:port` (read by ORIGINAL_DST). */
export const UPSTREAM_HEADER = "x-shardworks-upstream";
/** The listener and route configuration Envoy (the gateway) loads. */
export const INGRESS_NAME = "ingress";

/** Service names translation reserves (resource names of the gateway): not a baseline service. */
export const RESERVED_SERVICE_NAMES: readonly string[] = [INGRESS_NAME];

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
