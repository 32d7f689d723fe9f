/**
 * Bearer tokens of the scheduler API. A platform token reaches everything; a shard token has the
 * form `<shard-name>.<secret>` and reaches only its own shard (and that shard's sandboxes). Only
 * the sha256 of a shard's token is stored (`ShardRecord.tokenHash`).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * Who a request acts for. A shard principal carries its shard's uid (`ShardRecord.uid`) and
 * creation time: what it may reach is bound to that identity, not only to the name, which a later
 * shard can reuse.
 */
export type Principal =
  | { readonly kind: "platform" }
  | {
      readonly kind: "shard";
      readonly shard: string;
      readonly uid: string;
      /** `ShardRecord.createdAt`: sandboxes from before uids existed count as its if not older. */
      readonly createdAt: string;
    };

/** sha256 hex of a token. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** A fresh shard token: `<shard>.<43 base64url chars>`. */
export function newShardToken(shard: string): string {
  return `${shard}.${randomBytes(32).toString("base64url")}`;
}

/** The shard a shard token claims, or undefined when it is not of the shard form. */
export function shardOfToken(token: string): string | undefined {
  const dot = token.indexOf(".");
  return dot > 0 ? token.slice(0, dot) : undefined;
}

/** Constant-time comparison of two hex digests. */
export function digestsEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, "hex");
  const y = Buffer.from(b, "hex");
  return x.length === y.length && timingSafeEqual(x, y);
}
