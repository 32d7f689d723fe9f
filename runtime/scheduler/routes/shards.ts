/**
 * `PUT/GET/DELETE /v1/shards/<name>` and `GET /v1/shards`: the shard registry of the scheduler API,
 * as a Hono sub-app the scheduler mounts at `/v1/shards`. The scheduler's auth middleware sets
 * `principal`; a shard token reaches only its own shard, the platform token reaches all.
 */
import { Hono, type Context } from "hono";
import { BlockList, isIPv4 } from "node:net";
import { DEFAULT_SHARD_TTL_SECONDS, shardBodySchema, type ShardView } from "../../../contract/api";
import { dnsLabel, type ShardRecord } from "../../../contract/model";
import type { Principal } from "../../lib/auth";
import { ConflictError, ForbiddenError, NotFoundError } from "../../lib/errors";
import { parseJsonBody, parseParam, type ApiEnv } from "../../lib/http";
import type { ShardStore } from "../../routing/shard-store";

/** The API view of a stored shard. */
export function shardView(record: ShardRecord): ShardView {
  return {
    name: record.name,
    routingKey: record.routingKey,
    owner: record.owner,
    forks: Object.entries(record.forks)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([service, destination]) => {
        const protocol = record.protocols?.[service];
        return { service, destination, ...(protocol === undefined ? {} : { protocol }) };
      }),
    ttlSeconds: record.ttlSeconds,
    expiresAt: record.expiresAt,
    createdAt: record.createdAt,
  };
}

/** The shard sub-app; mount it at `/v1/shards` behind the auth middleware. */
export function createShardsApi(store: ShardStore): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();

  app.get("/", async (c) => {
    const principal = c.get("principal");
    const shards = await store.list();
    const visible =
      principal.kind === "platform" ? shards : shards.filter((s) => s.name === principal.shard);
    return c.json({ shards: visible.map(shardView) });
  });

  app.get("/:name", async (c) => {
    const name = shardName(c);
    authorize(c.get("principal"), name);
    const stored = await store.get(name);
    if (!stored) throw notFound(name);
    return c.json({ shard: shardView(stored.record) });
  });

  app.put("/:name", async (c) => {
    const name = shardName(c);
    const principal = c.get("principal");
    authorize(principal, name);
    const body = await parseJsonBody(c, shardBodySchema);
    const input = {
      routingKey: body.routingKey,
      owner: body.owner,
      forks: Object.fromEntries(body.forks.map((f) => [f.service, f.destination])),
      protocols: Object.fromEntries(
        body.forks.flatMap((f) => (f.protocol ? [[f.service, f.protocol] as const] : [])),
      ),
    };
    checkDestinations(principal, name, body.forks);
    const existing = await store.get(name);
    const now = new Date();
    if (existing && principal.kind === "shard") {
      if (body.owner !== existing.record.owner) {
        throw new ForbiddenError(
          "forbidden",
          `owner: a shard token cannot change the owner (it is "${existing.record.owner}"); use the platform token`,
        );
      }
      // A routing key is a claim on traffic: a shard token moving to a free key could take one a
      // shard about to be created will be given, or one a deleted shard's clients still send.
      if (body.routingKey !== existing.record.routingKey) {
        throw new ForbiddenError(
          "forbidden",
          `routingKey: a shard token cannot change the routing key (it is "${existing.record.routingKey}"); use the platform token`,
        );
      }
      checkNoExtension(existing.record, body.ttlSeconds, now);
    }
    if (existing && c.req.header("if-none-match") === "*") {
      // A create-only PUT (HTTP's If-None-Match: *): never overwrite a shard someone else made.
      throw new ConflictError(
        "shard_exists",
        `shard "${name}" already exists; delete it first or choose another name`,
      );
    }
    // A shard token's PUT without ttlSeconds keeps the expiry; the platform token's renews.
    const ttlSeconds =
      body.ttlSeconds ?? (principal.kind === "platform" ? DEFAULT_SHARD_TTL_SECONDS : undefined);
    if (existing) {
      const record = await store.update(
        existing,
        { ...input, ...(ttlSeconds === undefined ? {} : { ttlSeconds }) },
        now,
      );
      return c.json({ shard: shardView(record) }, 200);
    }
    if (principal.kind !== "platform") {
      throw new ForbiddenError("forbidden", "only the platform token may create shards");
    }
    const { record, token } = await store.create(
      name,
      { ...input, ttlSeconds: ttlSeconds ?? DEFAULT_SHARD_TTL_SECONDS },
      now,
    );
    return c.json({ shard: shardView(record), token }, 201);
  });

  app.delete("/:name", async (c) => {
    const name = shardName(c);
    authorize(c.get("principal"), name);
    if (!(await store.delete(name))) throw notFound(name);
    return c.body(null, 204);
  });

  return app;
}

/** Link-local addresses (cloud metadata services live at 169.254.169.254): never a destination. */
const LINK_LOCAL = new BlockList();
LINK_LOCAL.addSubnet("169.254.0.0", 16, "ipv4");
LINK_LOCAL.addSubnet("fe80::", 10, "ipv6");
/** Metadata service names that resolve to a link-local address. */
const METADATA_HOSTS = new Set(["metadata.google.internal", "metadata"]);

/**
 * Where a fork may send traffic. A shard token: only into its own namespace,
 * `<service>.shard-<shard>.svc[.cluster.local]:<port>` (anything else could aim the gateway at its
 * own admin port, etcd or another shard). The platform token: anywhere but link-local addresses.
 * IPv4 literals must be dotted-quad: a URL parser (the WHATWG one, as resolvers do) reads
 * `2852039166` or `0xa9.0xfe.0xa9.0xfe` as 169.254.169.254, so only the canonical form is let
 * through to be checked.
 */
function checkDestinations(
  principal: Principal,
  shard: string,
  forks: readonly { service: string; destination: string }[],
): void {
  const own = new RegExp(
    `^[a-z0-9]([-a-z0-9]*[a-z0-9])?\\.shard-${shard}\\.svc(\\.cluster\\.local)?$`,
  );
  forks.forEach(({ destination }, index) => {
    const field = `forks[${index}].destination`;
    const host = destination.slice(0, destination.lastIndexOf(":")).toLowerCase();
    // destinationSchema has refused hosts a URL parser rejects or reads as another address.
    const normalized = new URL(`http://${host}`).hostname;
    const family = isIPv4(normalized) ? "ipv4" : normalized.includes(":") ? "ipv6" : undefined;
    if (
      (family && LINK_LOCAL.check(normalized.replace(/^\[|\]$/g, ""), family)) ||
      METADATA_HOSTS.has(host.replace(/\.$/, ""))
    ) {
      throw new ForbiddenError(
        "forbidden",
        `${field}: "${host}" is a link-local/metadata address (169.254.0.0/16, fe80::/10), never a fork destination`,
      );
    }
    if (principal.kind === "shard" && !own.test(host)) {
      throw new ForbiddenError(
        "forbidden",
        `${field}: a shard token may only route to its own namespace, "<service>.shard-${shard}.svc[.cluster.local]:<port>"; "${destination}" is outside it (the platform token may set any destination)`,
      );
    }
  });
}

/**
 * A shard token may keep or shorten its shard's expiry, never move it later: else a leaked or
 * forgotten shard token would keep its shard (routes, sandboxes, the token itself) alive forever.
 * Only the platform token, which decides how long a shard lives, extends it.
 */
function checkNoExtension(record: ShardRecord, ttlSeconds: number | undefined, now: Date): void {
  if (ttlSeconds === undefined) return;
  const expiresAt = Date.parse(record.expiresAt);
  if (now.getTime() + ttlSeconds * 1000 > expiresAt) {
    // The same `now` goes to the update, so a TTL that fits here cannot land later there.
    const remaining = Math.max(Math.floor((expiresAt - now.getTime()) / 1000), 0);
    throw new ForbiddenError(
      "forbidden",
      `ttlSeconds: a shard token cannot extend its shard's expiry (${record.expiresAt}, ${remaining} s from now); send at most ${remaining}, or leave ttlSeconds out to keep it; only the platform token can extend it`,
    );
  }
}

function shardName(c: Context<ApiEnv>): string {
  return parseParam(c.req.param("name"), dnsLabel, "name");
}

/** A shard token may act on its own shard only. */
function authorize(principal: Principal, name: string): void {
  if (principal.kind === "shard" && principal.shard !== name) {
    throw new ForbiddenError(
      "forbidden",
      `this token belongs to shard "${principal.shard}" and cannot manage shard "${name}"`,
    );
  }
}

function notFound(name: string): NotFoundError {
  return new NotFoundError("not_found", `shard "${name}" does not exist`);
}
