/**
 * The pure parts of the testbed Kubernetes provider: property (un)wrapping, auto-naming, diffing.
 * Kept apart from the gRPC server so they can be unit-tested without an engine.
 */
import { randomBytes } from "node:crypto";
import { z } from "zod";

/** The engine's sentinel for a value not known during preview. */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
/** The special-signature key of a secret/resource/asset wrapper in the engine's property maps. */
const SIG_KEY = "4dabf18193072939515e22adb298388d";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** True when any leaf is the engine's "unknown" sentinel (preview of a not-yet-created input). */
export function hasUnknowns(value: unknown): boolean {
  if (value === UNKNOWN) return true;
  if (Array.isArray(value)) return value.some(hasUnknowns);
  if (value !== null && typeof value === "object") return Object.values(value).some(hasUnknowns);
  return false;
}

/** Drop secret wrappers (`{<sig>: <secret sig>, value}`) so the value is plain JSON. */
export function unwrapSecrets(value: Json): Json {
  if (Array.isArray(value)) return value.map(unwrapSecrets);
  if (value !== null && typeof value === "object") {
    if (SIG_KEY in value && "value" in value) return unwrapSecrets(value.value ?? null);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unwrapSecrets(v)]));
  }
  return value;
}

/** Deep equality of JSON values (object key order ignored). */
export function jsonEqual(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return (
      Array.isArray(a) &&
      Array.isArray(b) &&
      a.length === b.length &&
      a.every((v, i) => jsonEqual(v, b[i]))
    );
  }
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].every((k) => jsonEqual(a[k], b[k]));
}

/** The identity fields of a Kubernetes object as the inputs give them. */
export const ObjectIdentity = z.object({
  apiVersion: z.string({ error: "apiVersion is required (e.g. 'v1', 'apps/v1')" }).min(1),
  kind: z.string({ error: "kind is required (e.g. 'Namespace')" }).min(1),
  metadata: z
    .object({
      name: z.string().optional(),
      generateName: z.string().optional(),
      namespace: z.string().optional(),
    })
    .loose()
    .optional(),
});

function metadataOf(object: JsonObject): JsonObject {
  const metadata = object.metadata;
  return metadata !== null && typeof metadata === "object" && !Array.isArray(metadata)
    ? metadata
    : {};
}

/**
 * Auto-naming, as the real provider does it: an object without `metadata.name` is named
 * `<resource name>-<8 random characters>`; on later updates the name chosen the first time is kept
 * (taken from the old inputs the engine passes to Check).
 */
export function autoName(
  news: JsonObject,
  olds: JsonObject | undefined,
  resourceName: string,
): JsonObject {
  const metadata = metadataOf(news);
  if (typeof metadata.name === "string" && metadata.name !== "") return news; // incl. unknown
  const oldName = olds === undefined ? undefined : metadataOf(olds).name;
  const name =
    typeof oldName === "string" && oldName !== "" && oldName !== UNKNOWN
      ? oldName
      : `${resourceName}-${randomBytes(6)
          .toString("base64url")
          .toLowerCase()
          .replace(/[^a-z0-9]/g, "0")
          .slice(0, 8)}`;
  return { ...news, metadata: { ...metadata, name } };
}

export interface DiffResult {
  /** Top-level input properties that changed. */
  readonly changed: string[];
  /** Paths whose change forces a replacement (the object's identity). */
  readonly replaces: string[];
}

/**
 * Diff of old and new inputs. An object's identity (apiVersion, kind, name, namespace) changing
 * means a replacement; anything else is an in-place server-side apply.
 */
export function diffInputs(olds: JsonObject, news: JsonObject): DiffResult {
  const keys = new Set([...Object.keys(olds), ...Object.keys(news)]);
  const changed = [...keys].filter((k) => !jsonEqual(olds[k], news[k])).sort();
  const replaces: string[] = [];
  for (const key of ["apiVersion", "kind"]) {
    if (!jsonEqual(olds[key], news[key])) replaces.push(key);
  }
  const [om, nm] = [metadataOf(olds), metadataOf(news)];
  for (const key of ["name", "namespace"]) {
    if (!jsonEqual(om[key], nm[key])) replaces.push(`metadata.${key}`);
  }
  return { changed, replaces };
}

/** The live object as outputs: everything the API server returns except the managed fields noise. */
export function liveOutputs(live: JsonObject): JsonObject {
  const metadata = { ...metadataOf(live) };
  delete metadata.managedFields;
  return { ...live, metadata };
}
