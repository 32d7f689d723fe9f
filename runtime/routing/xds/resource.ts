/**
 * One xDS resource, encoded once (translation memoizes resources, so each is encoded and hashed
 * once), and the resources of a snapshot by type.
 */
import { createHash } from "node:crypto";
import { pack, type AnyMessage, type TypeUrl } from "./protos";

/** One xDS resource: its name, the message (plain snake_case object) and its encoded `Any`. */
export interface XdsResource {
  readonly name: string;
  readonly typeUrl: TypeUrl;
  /** The message as given to the encoder (read by `consistent()`). */
  readonly message: Readonly<Record<string, unknown>>;
  readonly any: AnyMessage;
  /** sha256 (hex) of the encoded message. */
  readonly hash: string;
}

/** Encode a resource once; keep the result (translation memoizes resources, so this runs once each). */
export function makeResource(
  typeUrl: TypeUrl,
  name: string,
  message: Record<string, unknown>,
): XdsResource {
  const any = pack(typeUrl, message);
  const hash = createHash("sha256").update(any.value).digest("hex");
  return Object.freeze({ name, typeUrl, message: Object.freeze(message), any, hash });
}

/**
 * A resource whose encoding is the concatenation of already-encoded parts of the same message
 * type. Protobuf defines concatenated encodings as the merge of the messages (repeated fields
 * append), so a RouteConfiguration of 10,000 virtual-host routes is re-assembled from the memoized
 * encoding of each virtual host instead of re-encoding all of them. `message` must be the merged
 * message (it is what `consistent()` reads); a unit test checks the bytes equal a full encode.
 * `partHashes` (one per part, in order) makes the hash the hash of the parts' hashes.
 */
export function makeResourceFromParts(
  typeUrl: TypeUrl,
  name: string,
  message: Record<string, unknown>,
  parts: readonly Uint8Array[],
  partHashes?: readonly string[],
): XdsResource {
  const value = Buffer.concat(parts);
  const any = { type_url: typeUrl, value };
  // Given each part's (memoized) hash, the resource's hash is the hash of those: still a function
  // of the bytes, without hashing megabytes again when one part of many changed.
  const hash = partHashes
    ? createHash("sha256").update(partHashes.join(",")).digest("hex")
    : createHash("sha256").update(value).digest("hex");
  return Object.freeze({ name, typeUrl, message: Object.freeze(message), any, hash });
}

/** Resources of a snapshot, by type. */
export type SnapshotResources = Readonly<Record<TypeUrl, readonly XdsResource[]>>;
