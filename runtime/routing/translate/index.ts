/**
 * Translation, pure: baseline services + shards + sandboxes → Envoy Listener, RouteConfiguration,
 * Cluster and ClusterLoadAssignment resources.
 *
 * The gateway (Envoy, ADR 0009): one virtual host per baseline service (domains: its name,
 * `<name>.<domain>` and its `hosts`, the in-cluster names of ADR 0012) whose `matcher` looks the
 * request's routing key up by exact match (`exact_match_map` on `x-shardworks-routing-key`, which
 * the Lua filter of `routing-key-filter.ts` fills from baggage once per request), so the cost of
 * a request does not depend on the number of shards. A fork to an IP address goes through one
 * shared ORIGINAL_DST cluster per upstream protocol (`gateway/forks/http1`, `gateway/forks/http2`),
 * the route setting the address in `x-shardworks-upstream`: no cluster per fork. A fork to a DNS
 * name gets its own LOGICAL_DNS cluster `gateway/shard/<shard>/<service>`. Clusters of `http2` and
 * `grpc` services speak HTTP/2 upstream; the listener accepts HTTP/1.1, h2c and WebSocket upgrades.
 *
 * gRPC xDS clients (which support neither matchers, Lua nor ORIGINAL_DST):
 * - One virtual host per baseline service. For each shard that forks the service, two routes to
 *   the fork's cluster: header `x-shardworks-routing-key: <key>` (exact), or a `baggage` header
 *   holding the member `shardworks-routing-key=<key>` anywhere in its list. Every header route
 *   comes before every baggage route (the first match wins), so an explicit header beats a
 *   baggage member naming another shard. Last, the default route to the baseline.
 * - Shards past `expiresAt` (at `state.now`) are left out, so their routes vanish at expiry even
 *   when the reaper lags.
 * - `<sandbox-id>.sandbox.<domain>` (and `<port>.<sandbox-id>.sandbox.<domain>`) → the node
 *   endpoint of a running sandbox's exposed port.
 * - For gRPC xDS clients (`xds:///<service>`): a Listener named after each service with an
 *   `api_listener` HttpConnectionManager that loads the service's RouteConfiguration over ADS.
 *   For Envoy: one `ingress` listener whose route scopes (`ingress/base`, `ingress/sandbox`,
 *   `ingress/b<n>`, ADR 0016) each name a route configuration of the same name.
 *   {@link forNode} splits the two: the gateway never sees api_listeners (Envoy refuses them in
 *   LDS), gRPC clients never see the ingress.
 *
 * {@link Translator} memoizes per shard, per service and per sandbox, so changing one shard among
 * 10,000 rebuilds only that shard's resources and the virtual hosts of the services it forks.
 */
export {
  ROUTING_KEY_BAGGAGE_MEMBER,
  ROUTING_KEY_HEADER,
  routingKeyFromBaggage,
} from "../routing-key-filter";
export {
  BASE_SCOPE,
  baselineClusterName,
  bucketScope,
  DEFAULT_ROUTE_BUCKETS,
  forkClusterName,
  gatewayForkClusterName,
  INGRESS_NAME,
  ingressRouteName,
  RESERVED_SERVICE_NAMES,
  ROUTE_SCOPE_HEADER,
  routeBucket,
  SANDBOX_SCOPE,
  sandboxClusterName,
  sharedForkClusterName,
  UPSTREAM_HEADER,
  upstreamHttp,
  type UpstreamHttp,
} from "./names";
export { forNode, type NodeKind } from "./per-node";
export { baggageRegex } from "./shard-part";
export { nextExpiry, unservedForks, type RoutingState } from "./state";
export { translate, Translator, type TranslateOptions } from "./translator";
