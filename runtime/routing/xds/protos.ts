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

/** Type URLs of the resource types we serve, in the order they are pushed. */
export const TypeUrl = {
  Cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  Endpoint: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
  Listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
  /** The gateway's route scopes (SRDS, ADR 0016); gRPC clients never ask for them. */
  ScopedRoute: "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration",
  Route: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
} as const;
export type TypeUrl = (typeof TypeUrl)[keyof typeof TypeUrl];

/** Clusters and endpoints first, then listeners and routes: nothing refers to what is not there yet. */
export const PUSH_ORDER: readonly TypeUrl[] = [
  TypeUrl.Cluster,
  TypeUrl.Endpoint,
  TypeUrl.Listener,
  TypeUrl.ScopedRoute,
  TypeUrl.Route,
];

/**
 * Types a subscription without names covers entirely (xDS' wildcard types: LDS, CDS, SRDS); for
 * RDS and EDS it covers nothing. The same in both protocols.
 */
export const WILDCARD_TYPES: readonly TypeUrl[] = [
  TypeUrl.Listener,
  TypeUrl.Cluster,
  TypeUrl.ScopedRoute,
];

/** Extension type URLs packed inside the resources. */
export const ExtensionTypeUrl = {
  HttpConnectionManager:
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
  Router: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
  Lua: "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
  Route: "type.googleapis.com/envoy.config.route.v3.Route",
  HttpRequestHeaderMatchInput:
    "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
  HttpProtocolOptions: "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
  Bootstrap: "type.googleapis.com/envoy.config.bootstrap.v3.Bootstrap",
} as const;

const RESOURCE_FILES = [
  "envoy/config/listener/v3/listener.proto",
  "envoy/config/route/v3/route.proto",
  "envoy/config/route/v3/scoped_route.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/endpoint/v3/endpoint.proto",
  "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
  "envoy/extensions/filters/http/router/v3/router.proto",
  "envoy/extensions/filters/http/lua/v3/lua.proto",
  "envoy/type/matcher/v3/http_inputs.proto",
  "envoy/config/bootstrap/v3/bootstrap.proto",
  "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
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
export function assertKnownFields(type: protobuf.Type, object: unknown, path: string): void {
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

const services = new Map<string, grpc.ServiceDefinition>();

/**
 * A gRPC service of Envoy's protos (`file`, the service's full name), loaded once per process:
 * parsing the protos takes long enough to keep off every call that needs the definition.
 */
export function envoyService(file: string, fullName: string): grpc.ServiceDefinition {
  const cached = services.get(fullName);
  if (cached) return cached;
  const definition = protoLoader.loadSync(file, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [...PROTO_INCLUDE_DIRS],
  });
  const constructor = fullName
    .split(".")
    .reduce<unknown>(
      (node, part) => (node as Record<string, unknown>)[part],
      grpc.loadPackageDefinition(definition),
    ) as grpc.ServiceClientConstructor;
  services.set(fullName, constructor.service);
  return constructor.service;
}

/** The gRPC definition of `envoy.service.discovery.v3.AggregatedDiscoveryService`. */
export function adsService(): grpc.ServiceDefinition {
  return envoyService(
    "envoy/service/discovery/v3/ads.proto",
    "envoy.service.discovery.v3.AggregatedDiscoveryService",
  );
}

/** Client constructor of the ADS service (tests and the bench act as an ADS client with it). */
export function adsClientConstructor(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(adsService(), "AggregatedDiscoveryService");
}

/**
 * Parse proto3 JSON (what Envoy reads from a bootstrap file) into `typeName`'s message, strictly:
 * unknown fields, bad enum names and malformed well-known types (Duration, Any with `@type`,
 * wrappers) are errors naming the path. protobufjs' own `fromObject` does not speak the JSON
 * mapping of those well-known types and drops unknown fields, so this walks the real descriptors.
 */
export function fromProtoJson(typeName: string, json: unknown): protobuf.Message {
  const type = envoyRoot().lookupType(typeName);
  return type.fromObject(jsonToObject(type, json, type.name) as Record<string, unknown>);
}

const WRAPPERS = new Set([
  ".google.protobuf.BoolValue",
  ".google.protobuf.UInt32Value",
  ".google.protobuf.UInt64Value",
  ".google.protobuf.Int32Value",
  ".google.protobuf.Int64Value",
  ".google.protobuf.DoubleValue",
  ".google.protobuf.FloatValue",
  ".google.protobuf.StringValue",
]);

function jsonToObject(type: protobuf.Type, json: unknown, path: string): unknown {
  switch (type.fullName) {
    case ".google.protobuf.Duration": {
      const match = typeof json === "string" ? /^(-?\d+)(?:\.(\d{1,9}))?s$/.exec(json) : null;
      if (!match) throw new Error(`${path}: a Duration must be a string like "5s" or "0.25s"`);
      return { seconds: match[1], nanos: Number((match[2] ?? "").padEnd(9, "0")) };
    }
    case ".google.protobuf.Any": {
      const { "@type": typeUrl, ...rest } = (json ?? {}) as Record<string, unknown>;
      if (typeof typeUrl !== "string") throw new Error(`${path}: an Any needs "@type"`);
      const inner = messageType(typeUrl);
      const value = inner
        .encode(inner.fromObject(jsonToObject(inner, rest, `${path}<${inner.name}>`) as object))
        .finish();
      return { type_url: typeUrl, value };
    }
    case ".google.protobuf.Struct":
      return structFromJson(json, path);
    case ".google.protobuf.Value":
      return valueFromJson(json, path);
  }
  if (WRAPPERS.has(type.fullName)) return { value: json };
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new Error(`${path}: expected an object for ${type.fullName}`);
  }
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(json)) {
    const field =
      type.fields[name] ?? Object.values(type.fields).find((f) => f.name === snakeCase(name));
    if (!field) throw new Error(`${path}.${name}: no such field in ${type.fullName}`);
    const resolved = field.resolve().resolvedType;
    const convert = (v: unknown, p: string): unknown => {
      if (resolved instanceof protobuf.Type) return jsonToObject(resolved, v, p);
      if (resolved instanceof protobuf.Enum && typeof v === "string" && !(v in resolved.values)) {
        throw new Error(`${p}: "${v}" is not a value of ${resolved.fullName}`);
      }
      return v;
    };
    const p = `${path}.${name}`;
    out[field.name] =
      field instanceof protobuf.MapField
        ? Object.fromEntries(
            Object.entries(value as object).map(([k, v]) => [k, convert(v, `${p}[${k}]`)]),
          )
        : Array.isArray(value)
          ? value.map((v, i) => convert(v, `${p}[${i}]`))
          : convert(value, p);
  }
  return out;
}

function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** proto3 JSON of a `google.protobuf.Struct` → its message fields (protobufjs has no wrapper for it). */
function structFromJson(json: unknown, path: string): Record<string, unknown> {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new Error(`${path}: expected an object for google.protobuf.Struct`);
  }
  return {
    fields: Object.fromEntries(
      Object.entries(json).map(([k, v]) => [k, valueFromJson(v, `${path}.${k}`)]),
    ),
  };
}

/** proto3 JSON of a `google.protobuf.Value` → its message fields (protobufjs names these camelCase). */
function valueFromJson(json: unknown, path: string): Record<string, unknown> {
  if (json === null) return { nullValue: 0 };
  if (typeof json === "number") return { numberValue: json };
  if (typeof json === "string") return { stringValue: json };
  if (typeof json === "boolean") return { boolValue: json };
  if (Array.isArray(json)) {
    return { listValue: { values: json.map((v, i) => valueFromJson(v, `${path}[${i}]`)) } };
  }
  if (typeof json === "object") return { structValue: structFromJson(json, path) };
  throw new Error(`${path}: ${typeof json} is not a google.protobuf.Value`);
}
