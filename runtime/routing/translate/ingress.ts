/**
 * The gateway's `ingress` listener and its scoped route configurations (ADR 0016): the Lua filter
 * names each request's scope in `x-shardworks-route-scope`, and Envoy picks the route
 * configuration `ingress/<scope>` by exact match of that header. The scopes are SRDS resources
 * (`ScopedRouteConfiguration`, one per scope, each naming its route configuration): Envoy
 * refuses RDS route configurations under scopes listed inline in the listener. Scopes:
 * - `base`: every service's baseline virtual host (requests without a routing key);
 * - `b0` … `b<n-1>`: every service's virtual host as seen by keys of that bucket: an exact-match
 *   matcher over the service's forks whose keys hash there, the baseline on no match;
 * - `sandbox`: the virtual hosts of running sandboxes.
 * A shard change rebuilds one bucket's route configuration (about 1/n of the forks), not all.
 */
import { routingKeyFilter } from "../routing-key-filter";
import { ExtensionTypeUrl, pack, TypeUrl } from "../xds/protos";
import { makeResource, makeResourceFromParts, type XdsResource } from "../xds/resource";
import { ADS_SOURCE, ROUTER_FILTER } from "./envoy-resources";
import {
  BASE_SCOPE,
  bucketScope,
  INGRESS_NAME,
  ingressRouteName,
  ROUTE_SCOPE_HEADER,
  SANDBOX_SCOPE,
} from "./names";
import type { SandboxPart } from "./sandbox-part";
import type { IngressPart, ServicePart } from "./service-part";
import { hashOf } from "./wire";

/** Where the ingress listens, and how requests are scoped. */
export interface IngressOptions {
  readonly host: string;
  readonly port: number;
  readonly buckets: number;
  readonly domain: string;
}

/**
 * Builds the ingress resources, memoizing each scope's route configuration by the identity of
 * its parts: a change rebuilds only the scopes whose parts changed.
 */
export class Ingress {
  /** Each scope's name and, for a bucket's scope, its bucket. */
  readonly #scopes: readonly { readonly name: string; readonly bucket?: number }[];
  /** The listener and the scope resources: fixed for the options. */
  readonly #fixed: readonly XdsResource[];
  readonly #built = new Map<string, { parts: readonly IngressPart[]; resource: XdsResource }>();
  #resources: XdsResource[] = [];

  constructor(options: IngressOptions) {
    this.#scopes = [
      { name: BASE_SCOPE },
      { name: SANDBOX_SCOPE },
      ...Array.from({ length: options.buckets }, (_, bucket) => ({
        name: bucketScope(bucket),
        bucket,
      })),
    ];
    this.#fixed = [
      ingressListener(options),
      ...this.#scopes.map(({ name }) =>
        makeResource(TypeUrl.ScopedRoute, ingressRouteName(name), {
          name: ingressRouteName(name),
          route_configuration_name: ingressRouteName(name),
          key: { fragments: [{ string_key: name }] },
        }),
      ),
    ];
  }

  /** The listener, the scopes and their route configurations; the same array when nothing changed. */
  resources(services: readonly ServicePart[], sandboxes: readonly SandboxPart[]): XdsResource[] {
    let changed = this.#resources.length === 0;
    const routes: XdsResource[] = [];
    for (const scope of this.#scopes) {
      const parts = partsOf(scope, services, sandboxes);
      const previous = this.#built.get(scope.name);
      if (
        previous !== undefined &&
        previous.parts.length === parts.length &&
        previous.parts.every((p, i) => p === parts[i])
      ) {
        routes.push(previous.resource);
        continue;
      }
      const resource = scopeRoute(scope.name, parts);
      this.#built.set(scope.name, { parts, resource });
      routes.push(resource);
      changed = true;
    }
    if (changed) this.#resources = [...this.#fixed, ...routes];
    return this.#resources;
  }
}

/** The parts of a scope's route configuration, in order. */
function partsOf(
  scope: { readonly name: string; readonly bucket?: number },
  services: readonly ServicePart[],
  sandboxes: readonly SandboxPart[],
): IngressPart[] {
  const { bucket } = scope;
  if (bucket !== undefined) {
    return services.map((p) => p.gatewayBuckets.get(bucket) ?? p.gatewayBase);
  }
  if (scope.name === SANDBOX_SCOPE) return sandboxes.map((p) => p.gatewayPart);
  return services.map((p) => p.gatewayBase);
}

/** A scope's route configuration, assembled from its parts' memoized encodings and hashes. */
function scopeRoute(scope: string, parts: readonly IngressPart[]): XdsResource {
  const name = ingressRouteName(scope);
  const head = pack(TypeUrl.Route, { name }).value;
  // The scope header is the gateway's own: it does not travel to the services. (After the
  // virtual hosts: a field of higher number, so the bytes equal a full encode.)
  const tail = SCOPE_HEADER_REMOVED();
  return makeResourceFromParts(
    TypeUrl.Route,
    name,
    {
      name,
      virtual_hosts: parts.flatMap((p) => p.virtualHosts),
      request_headers_to_remove: [ROUTE_SCOPE_HEADER],
    },
    [head, ...parts.map((p) => p.bytes), tail],
    [hashOf(head), ...parts.map((p) => p.hash), hashOf(tail)],
  );
}

let scopeHeaderRemoved: Uint8Array | undefined;
/** `RouteConfiguration { request_headers_to_remove: [scope header] }`, encoded once. */
function SCOPE_HEADER_REMOVED(): Uint8Array {
  scopeHeaderRemoved ??= pack(TypeUrl.Route, {
    request_headers_to_remove: [ROUTE_SCOPE_HEADER],
  }).value;
  return scopeHeaderRemoved;
}

/** The ingress listener: its HttpConnectionManager picks a scope's route configuration by header. */
function ingressListener(options: IngressOptions): XdsResource {
  const hcm = pack(ExtensionTypeUrl.HttpConnectionManager, {
    stat_prefix: INGRESS_NAME,
    codec_type: "AUTO",
    strip_any_host_port: true,
    scoped_routes: {
      name: INGRESS_NAME,
      scope_key_builder: {
        fragments: [{ header_value_extractor: { name: ROUTE_SCOPE_HEADER, index: 0 } }],
      },
      rds_config_source: ADS_SOURCE,
      scoped_rds: { scoped_rds_config_source: ADS_SOURCE },
    },
    // WebSocket (HTTP/1.1 Upgrade) is proxied; without this Envoy answers 403.
    upgrade_configs: [{ upgrade_type: "websocket" }],
    // The routing key and the scope are read once per request, before the route lookup.
    http_filters: [
      routingKeyFilter({ buckets: options.buckets, domain: options.domain }),
      ROUTER_FILTER(),
    ],
  });
  return makeResource(TypeUrl.Listener, INGRESS_NAME, {
    name: INGRESS_NAME,
    address: { socket_address: { address: options.host, port_value: options.port } },
    filter_chains: [
      { filters: [{ name: "envoy.filters.network.http_connection_manager", typed_config: hcm }] },
    ],
  });
}
