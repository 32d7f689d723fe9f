/**
 * Envoy's own protos, as published inside `@grpc/grpc-js-xds` (`deps/`: envoy-api, xds, googleapis,
 * protoc-gen-validate), loaded at runtime with protobufjs / `@grpc/proto-loader`. Nothing here
 * re-types a message by hand: resources are encoded with the real message types, and `Any`
 * payloads carry the real type URLs.
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import * as protobuf from "protobufjs";

/** The directories Envoy's protos import from. */
export const PROTO_INCLUDE_DIRS: readonly string[] = (() => {
  const deps = join(dirname(require.resolve("@grpc/grpc-js-xds/package.json")), "deps");
  return [
    ...["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((d) => join(deps, d)),
    // google/protobuf/descriptor.proto ships with protobufjs itself.
    dirname(require.resolve("protobufjs/package.json")),
  ];
})();

/** Type URLs of the four resource types we serve, in the order they are pushed. */
export const TypeUrl = {
  Cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  Endpoint: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
  Listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
  Route: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
} as const;
export type TypeUrl = (typeof TypeUrl)[keyof typeof TypeUrl];

/** Clusters and endpoints first, then listeners and routes: nothing refers to what is not there yet. */
export const PUSH_ORDER: readonly TypeUrl[] = [
  TypeUrl.Cluster,
  TypeUrl.Endpoint,
  TypeUrl.Listener,
  TypeUrl.Route,
];

/** Extension type URLs packed inside the resources. */
export const ExtensionTypeUrl = {
  HttpConnectionManager:
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
  Router: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
  Bootstrap: "type.googleapis.com/envoy.config.bootstrap.v3.Bootstrap",
} as const;

const RESOURCE_FILES = [
  "envoy/config/listener/v3/listener.proto",
  "envoy/config/route/v3/route.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/endpoint/v3/endpoint.proto",
  "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
  "envoy/extensions/filters/http/router/v3/router.proto",
  "envoy/config/bootstrap/v3/bootstrap.proto",
  "envoy/service/discovery/v3/discovery.proto",
];

let root: protobuf.Root | undefined;

/** One protobufjs Root with every Envoy message we encode or decode (loaded once, ~1 s). */
export function envoyRoot(): protobuf.Root {
  if (root) return root;
  const r = new protobuf.Root();
  r.resolvePath = (_origin, target) => {
    for (const dir of PROTO_INCLUDE_DIRS) {
      const candidate = join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return target;
  };
  r.loadSync(RESOURCE_FILES, { keepCase: true });
  r.resolveAll();
  root = r;
  return r;
}

/** The message type behind a `type.googleapis.com/<name>` URL. */
export function messageType(typeUrl: string): protobuf.Type {
  return envoyRoot().lookupType(typeUrl.slice(typeUrl.indexOf("/") + 1));
}

/** A protobuf `Any` as proto-loader and protobufjs represent it. */
export interface AnyMessage {
  type_url: string;
  value: Uint8Array;
}

/** Encode a plain (snake_case) object as `typeUrl`'s message and wrap it in an `Any`. */
export function pack(typeUrl: string, object: Record<string, unknown>): AnyMessage {
  const type = messageType(typeUrl);
  assertKnownFields(type, object, type.name);
  // fromObject coerces (a verify() of its result cannot fail), so the field check above is the guard.
  return { type_url: typeUrl, value: type.encode(type.fromObject(object)).finish() };
}

/**
 * protobufjs' `fromObject` silently drops fields it does not know; a misspelt field would vanish
 * from what we send, so every field name is checked against the real message type first.
 */
function assertKnownFields(type: protobuf.Type, object: unknown, path: string): void {
  if (object === null || typeof object !== "object" || object instanceof Uint8Array) return;
  if (type.fullName === ".google.protobuf.Any") return;
  for (const [name, value] of Object.entries(object)) {
    const field = type.fields[name];
    if (!field) throw new Error(`${path}.${name}: no such field in ${type.fullName}`);
    const resolved = field.resolve().resolvedType;
    if (!(resolved instanceof protobuf.Type)) continue;
    const values: unknown[] =
      field instanceof protobuf.MapField
        ? Object.values(value as object)
        : Array.isArray(value)
          ? value
          : [value];
    values.forEach((v) => assertKnownFields(resolved, v, `${path}.${name}`));
  }
}

/** Decode an `Any` with its real type into a plain object (enums as names, longs as strings). */
export function unpack(any: AnyMessage): Record<string, unknown> {
  const type = messageType(any.type_url);
  return type.toObject(type.decode(any.value), {
    enums: String,
    longs: String,
    defaults: false,
    oneofs: true,
  });
}

/** The gRPC constructor of `envoy.service.discovery.v3.AggregatedDiscoveryService`. */
export function adsService(): grpc.ServiceDefinition {
  const definition = protoLoader.loadSync("envoy/service/discovery/v3/ads.proto", {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [...PROTO_INCLUDE_DIRS],
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    envoy: {
      service: {
        discovery: {
          v3: { AggregatedDiscoveryService: grpc.ServiceClientConstructor };
        };
      };
    };
  };
  return loaded.envoy.service.discovery.v3.AggregatedDiscoveryService.service;
}

/** Client constructor of the ADS service (tests and the bench act as an ADS client with it). */
export function adsClientConstructor(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(adsService(), "AggregatedDiscoveryService");
}
