/** Protobuf encoding of resource parts, so a resource is assembled from memoized encodings. */
import { createHash } from "node:crypto";
import * as protobuf from "protobufjs";
import { assertKnownFields, envoyRoot } from "../xds/protos";

/** sha256 of `bytes`, hex. */
export function hashOf(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** A message type of Envoy's (or xDS') protos by full name. */
export function messageType(name: string): protobuf.Type {
  return envoyRoot().lookupType(name);
}

/** Encode a message of Envoy's (or xDS') protos by full name, field names checked. */
export function encodeMessage(typeName: string, fields: Record<string, unknown>): Uint8Array {
  const type = messageType(typeName);
  assertKnownFields(type, fields, type.name);
  return type.encode(type.fromObject(fields)).finish();
}

/** One length-delimited field `id` holding already-encoded bytes. */
export function lengthDelimited(id: number, bytes: Uint8Array): Uint8Array {
  return protobuf.Writer.create()
    .uint32((id << 3) | 2)
    .bytes(bytes)
    .finish();
}

/** Encode (part of) a VirtualHost with Envoy's type, field names checked. */
export function encodeVirtualHost(fields: Record<string, unknown>): Uint8Array {
  return encodeMessage("envoy.config.route.v3.VirtualHost", fields);
}

/** `RouteConfiguration { virtual_hosts: [<encoded virtual host>] }`, via protobufjs' writer. */
export function virtualHostsPart(virtualHost: Uint8Array): Uint8Array {
  const field = envoyRoot().lookupType("envoy.config.route.v3.RouteConfiguration").fields
    .virtual_hosts!;
  return lengthDelimited(field.id, virtualHost);
}
