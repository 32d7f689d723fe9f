/**
 * The scheduler API's bearer-token auth: it sets the {@link Principal} every route acts for.
 */
import type { MiddlewareHandler } from "hono";
import { digestsEqual, hashToken, shardOfToken, type Principal } from "../../lib/auth";
import { HttpError } from "../../lib/errors";
import { bearerToken, unauthenticated, type ApiEnv } from "../../lib/http";
import { keys } from "../../lib/keys";
import { type ShardRecord, shardRecordSchema, shardUidOf } from "../../../contract/model";
import type { Store } from "../../lib/store";

/** The authenticated caller; the auth middleware always sets it. */
export function principalOf(c: { get(key: "principal"): Principal }): Principal {
  return c.get("principal");
}

/**
 * Stands in for an unknown shard's record, so that authenticating an unknown shard name costs
 * the same work (one etcd read, one JSON parse and schema check, one constant-time comparison)
 * as a known one with a wrong secret: response time does not tell which shard names exist.
 */
const absentShard = JSON.stringify({
  name: "absent",
  uid: "0".repeat(32),
  routingKey: "absent",
  owner: "absent",
  forks: {},
  ttlSeconds: 1,
  expiresAt: new Date(0).toISOString(),
  tokenHash: "0".repeat(64),
  createdAt: new Date(0).toISOString(),
} satisfies ShardRecord);

/**
 * Bearer-token auth: platform token, or `<shard>.<secret>` checked against `shards/<shard>`; a
 * shard whose `expiresAt` has passed is refused at once (the routing controller's reaper deletes
 * its record later).
 */
export function authMiddleware(store: Store, platformToken: string): MiddlewareHandler<ApiEnv> {
  const platformHash = hashToken(platformToken);
  return async (c, next) => {
    const token = bearerToken(c.req.header("authorization"));
    if (token === undefined) {
      throw unauthenticated(
        'send "Authorization: Bearer <token>" (the platform token or a shard token)',
      );
    }
    const digest = hashToken(token);
    if (digestsEqual(digest, platformHash)) {
      c.set("principal", { kind: "platform" });
      return next();
    }
    const claimed = shardOfToken(token);
    const shard = claimed !== undefined && /^[a-z0-9-]{1,63}$/.test(claimed) ? claimed : undefined;
    // Always one read, even for a name that cannot be a shard (the key cannot exist).
    const response = await store.client.get(keys.shard(shard ?? "-")).exec();
    const kv = response.kvs[0];
    const stored = shardRecordSchema.parse(JSON.parse(kv ? kv.value.toString() : absentShard));
    const matches = digestsEqual(digest, stored.tokenHash);
    if (kv && shard !== undefined && matches) {
      if (Date.parse(stored.expiresAt) <= Date.now()) {
        throw new HttpError(
          401,
          "token_expired",
          `shard ${shard} expired at ${stored.expiresAt}; its token no longer works (the platform token can create it again)`,
        );
      }
      c.set("principal", {
        kind: "shard",
        shard,
        uid: shardUidOf(stored),
        createdAt: stored.createdAt,
      });
      return next();
    }
    throw unauthenticated("the bearer token is not valid (unknown shard or wrong secret)");
  };
}
