/**
 * Who may reach and create which sandbox: a shard token sees only its shard's sandboxes (and
 * cannot tell another shard's from a missing one), pulls only from allowed registries, and gets
 * ids scoped to its shard. Pure functions over the {@link Principal}; they throw domain errors.
 */
import { createHash, randomBytes } from "node:crypto";
import { hostOf, nonPublicHostReason } from "../lib/addresses";
import type { Principal } from "../lib/auth";
import { ForbiddenError, InvalidRequestError, NotFoundError } from "../lib/errors";
import type { RegistryAccess, SandboxRecord } from "../../contract/model";
import { parseImageReference } from "../node-agent/images/reference";

/**
 * Whether the principal may see this sandbox: the platform, or the shard of the same name and uid.
 * A sandbox written before uids existed (no `shardUid`) is the shard's only if it was created
 * after the shard: one left over from an earlier shard of the same name is older than this one.
 */
export function canReachSandbox(principal: Principal, record: SandboxRecord): boolean {
  if (principal.kind === "platform") return true;
  if (record.spec.shard !== principal.shard) return false;
  if (record.spec.shardUid !== undefined) return record.spec.shardUid === principal.uid;
  return Date.parse(record.createdAt) >= Date.parse(principal.createdAt);
}

/** The one answer for "no such sandbox" and "not yours": the two must not be told apart. */
export function sandboxNotFound(id: string): NotFoundError {
  return new NotFoundError(
    "not_found",
    `sandbox ${id} does not exist (list them with GET /v1/sandboxes)`,
  );
}

/**
 * Not found unless the principal may touch this sandbox: another shard's sandbox is answered
 * exactly like a missing one, so a shard token cannot learn which ids exist.
 */
export function assertSandboxAccess(principal: Principal, record: SandboxRecord): void {
  if (!canReachSandbox(principal, record)) throw sandboxNotFound(record.id);
}

/**
 * A shard token's image must come from a registry it may make the node connect to: one of
 * `allowed` when configured, else any registry on a public host (never loopback, private,
 * link-local, local names). Refused here, before any connection, so the answer is the same
 * whether anything listens there or not (no port scan through pulls). The node then fetches it
 * with the access returned: `any` for an allowed registry, else `public` (every connection's
 * resolved address checked too: a public-looking name may resolve into the node's network).
 */
export function checkShardRegistry(
  image: string,
  allowed: readonly string[] | undefined,
): RegistryAccess {
  const ref = parseImageReference(image);
  if (ref.kind !== "registry") return "public";
  if (allowed !== undefined) {
    if (allowed.includes(ref.registry)) return "any";
    throw new ForbiddenError(
      "forbidden",
      `image: registry "${ref.registry}" is not one a shard token may pull from (${allowed.join(", ") || "none configured"}); push the image there or use the platform token`,
    );
  }
  const reason = nonPublicHostReason(hostOf(ref.registry));
  if (reason !== undefined) {
    throw new ForbiddenError(
      "forbidden",
      `image: registry "${ref.registry}" is ${reason}; a shard token may pull only from public registries (or those the platform allows: shardRegistries)`,
    );
  }
  return "public";
}

/** Longest `id` a shard token may ask for: room for the `-<10 hex>` of {@link sandboxId}. */
export const maxShardSandboxIdLength = 52;

/**
 * The id a new sandbox gets. Ids are one global key space, so a shard token's chosen id is scoped
 * to its shard: stored as `<id>-<10 hex of sha256(shard uid, id)>`. The same shard asking twice
 * gets the same id (a retry is a 409 on its own sandbox); another shard can neither reach nor
 * collide with it, so a 409 tells nobody about sandboxes they cannot see.
 */
export function sandboxId(principal: Principal, requested: string | undefined): string {
  if (requested === undefined) return `sb-${randomBytes(5).toString("hex")}`;
  if (principal.kind === "platform") return requested;
  if (requested.length > maxShardSandboxIdLength) {
    throw new InvalidRequestError(
      "invalid_request",
      `id: a shard token's id is at most ${maxShardSandboxIdLength} characters (the API appends "-<10 hex>" to scope it to the shard); shorten it`,
    );
  }
  const scope = createHash("sha256").update(`${principal.uid}\n${requested}`).digest("hex");
  return `${requested}-${scope.slice(0, 10)}`;
}
