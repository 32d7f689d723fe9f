/** The names translation gives Envoy's resources: headers, the ingress, and cluster names. */
import { DEFAULT_SERVICE_PROTOCOL, type ServiceProtocol } from "../../../contract/model";

/** The header the gateway's fork routes set to the fork's `ip:port` (read by ORIGINAL_DST). */
export const UPSTREAM_HEADER = "x-shardworks-upstream";
/** The listener Envoy (the gateway) loads; its route configurations are `ingress/<scope>`. */
export const INGRESS_NAME = "ingress";

/**
 * The header the gateway's Lua filter sets to a request's route scope (ADR 0016): `base` (no
 * routing key), `sandbox` (a sandbox host) or `b<n>`, the key's bucket. A client's value is
 * always overwritten.
 */
export const ROUTE_SCOPE_HEADER = "x-shardworks-route-scope";
/** Scope of requests without a (valid) routing key: every service's baseline. */
export const BASE_SCOPE = "base";
/** Scope of requests to `…sandbox.<domain>` hosts. */
export const SANDBOX_SCOPE = "sandbox";
/** Buckets routing keys hash into, unless {@link TranslateOptions.routeBuckets} says otherwise. */
export const DEFAULT_ROUTE_BUCKETS = 64;
/** The most buckets translation accepts (each is a route configuration Envoy holds). */
export const MAX_ROUTE_BUCKETS = 1024;
/** The scope of bucket `n`. */
export const bucketScope = (n: number): string => `b${n}`;
/** The gateway's route configuration of a scope. */
export const ingressRouteName = (scope: string): string => `${INGRESS_NAME}/${scope}`;

/**
 * The bucket of a routing key: djb2 (h = h * 33 + byte, mod 2^32) mod `buckets`. The Lua filter
 * computes the same; djb2 because every step stays below 2^53, so Lua's doubles compute it
 * exactly. Routing keys are ASCII (`[a-z0-9-]`), so bytes and UTF-16 code units agree.
 */
export function routeBucket(routingKey: string, buckets: number): number {
  let h = 5381;
  for (let i = 0; i < routingKey.length; i++) {
    h = (h * 33 + routingKey.charCodeAt(i)) % 4294967296;
  }
  return h % buckets;
}

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
