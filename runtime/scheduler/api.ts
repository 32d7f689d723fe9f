/**
 * The scheduler's HTTP API (Hono). `createApi` builds the app: request ids, metrics, the auth
 * middleware that sets the {@link Principal}, the sandboxes and nodes sub-apps, and one central
 * error handler. Other sub-apps (e.g. `/v1/shards`) are mounted through `mounts`.
 */
import { createHash, randomBytes } from "node:crypto";
import { Hono, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { requestId } from "hono/request-id";
import { digestsEqual, hashToken, shardOfToken, type Principal } from "../lib/auth";
import { HttpError } from "../lib/errors";
import type { ApiEnv } from "../lib/http";
import { keys } from "../lib/keys";
import { logger } from "../lib/logger";
import {
  type SandboxRecord,
  type SandboxSpec,
  type ShardRecord,
  SandboxPhase,
  shardRecordSchema,
  shardUidOf,
  sandboxRecordSchema,
} from "../lib/model";
import { hostOf, nonPublicHostReason } from "../lib/addresses";
import { parseImageReference } from "../node-agent/images/reference";
import {
  decode,
  STORE_RETRY_AFTER_SECONDS,
  storeUnavailableError,
  TERMINAL_PHASES,
  type Store,
  type Versioned,
} from "../lib/store";
import { metrics, registry } from "./metrics";
import {
  createSandboxBodySchema,
  createSandboxQuerySchema,
  listQuerySchema,
  logsQuerySchema,
  migrateBodySchema,
  nodesQuerySchema,
  parseJsonBody,
  parseName,
  parseQuery,
} from "./validation";

/** What the API needs. */
export interface ApiOptions {
  store: Store;
  /** The platform bearer token (reaches everything). */
  platformToken: string;
  /** Largest accepted request body in bytes; default 1 MiB. */
  bodyLimitBytes?: number;
  /** Bearer token sent to node agents' APIs; default the platform token. */
  agentToken?: string;
  /** Sub-apps mounted under the authenticated API, e.g. `{ path: "/v1/shards", app: shardsApp }`. */
  mounts?: readonly { path: string; app: Hono<ApiEnv> }[];
  /** The runtime version this process runs, reported by `/healthz` (the rollout checks it). */
  version?: string;
  /**
   * Registries (`host[:port]`, exactly as in image references) shard tokens may pull from. Unset:
   * any registry on a public host. Set: only these (they may be private, e.g. an in-cluster
   * registry); the platform token may name any registry either way.
   */
  shardRegistries?: readonly string[];
}

/** The authenticated caller; the auth middleware always sets it. */
function principalOf(c: { get(key: "principal"): Principal }): Principal {
  return c.get("principal");
}

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
function sandboxNotFound(id: string): HttpError {
  return new HttpError(
    404,
    "not_found",
    `sandbox ${id} does not exist (list them with GET /v1/sandboxes)`,
  );
}

/**
 * 404 unless the principal may touch this sandbox: another shard's sandbox is answered exactly
 * like a missing one, so a shard token cannot learn which ids exist.
 */
export function assertSandboxAccess(principal: Principal, record: SandboxRecord): void {
  if (!canReachSandbox(principal, record)) throw sandboxNotFound(record.id);
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
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match?.[1]) {
      throw new HttpError(
        401,
        "unauthenticated",
        'send "Authorization: Bearer <token>" (the platform token or a shard token)',
      );
    }
    const token = match[1];
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
    throw new HttpError(
      401,
      "unauthenticated",
      "the bearer token is not valid (unknown shard or wrong secret)",
    );
  };
}

/** Resolve when the sandbox reaches the wanted phase (or a terminal one), or at the deadline. */
async function waitForPhase(
  store: Store,
  created: Versioned<SandboxRecord>,
  wait: "running" | "exited",
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ record: SandboxRecord; timedOut: boolean }> {
  const done = (r: SandboxRecord): boolean =>
    TERMINAL_PHASES.has(r.status.phase) ||
    (wait === "running" && r.status.phase === SandboxPhase.Running);
  if (done(created.value)) return { record: created.value, timedOut: false };
  const key = keys.sandbox(created.value.id);
  const watcher = await store.client
    .watch()
    .key(key)
    .startRevision(String(BigInt(created.modRevision) + 1n))
    .create();
  try {
    return await new Promise((resolve) => {
      let last = created.value;
      const finish = (timedOut: boolean): void => {
        clearTimeout(timer);
        resolve({ record: last, timedOut });
      };
      const timer = setTimeout(() => finish(true), timeoutMs);
      signal.addEventListener("abort", () => finish(true), { once: true });
      watcher.on("put", (kv) => {
        last = decode(sandboxRecordSchema, kv);
        if (done(last)) finish(false);
      });
      watcher.on("delete", () => {
        last = {
          ...last,
          status: { ...last.status, phase: SandboxPhase.Failed, reason: "deleted while waiting" },
        };
        finish(false);
      });
    });
  } finally {
    await watcher.cancel().catch(() => undefined);
  }
}

/** Call a node agent's HTTP API; errors become 503 naming the node. */
async function callAgent(address: string, path: string, init: RequestInit = {}): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(`http://${address}${path}`, init);
  } catch (error) {
    throw new HttpError(
      503,
      "node_unreachable",
      `node agent at ${address} is unreachable: ${(error as Error).message}`,
      undefined,
      { cause: error },
    );
  }
  if (!response.ok) {
    const text = await response.text();
    let message = text;
    try {
      message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? text;
    } catch {
      // not JSON: keep the text
    }
    const status = response.status === 404 ? 404 : response.status === 409 ? 409 : 503;
    throw new HttpError(status, "node_agent_error", `node agent at ${address}: ${message}`);
  }
  return response;
}

/**
 * A shard token's image must come from a registry it may make the node connect to: one of
 * `allowed` when configured, else any registry on a public host (never loopback, private,
 * link-local, local names). Refused here, before any connection, so the answer is the same
 * whether anything listens there or not (no port scan through pulls).
 */
export function checkShardRegistry(image: string, allowed: readonly string[] | undefined): void {
  const ref = parseImageReference(image);
  if (ref.kind !== "registry") return;
  if (allowed !== undefined) {
    if (allowed.includes(ref.registry)) return;
    throw new HttpError(
      403,
      "forbidden",
      `image: registry "${ref.registry}" is not one a shard token may pull from (${allowed.join(", ") || "none configured"}); push the image there or use the platform token`,
    );
  }
  const reason = nonPublicHostReason(hostOf(ref.registry));
  if (reason !== undefined) {
    throw new HttpError(
      403,
      "forbidden",
      `image: registry "${ref.registry}" is ${reason}; a shard token may pull only from public registries (or those the platform allows: shardRegistries)`,
    );
  }
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
    throw new HttpError(
      400,
      "invalid_request",
      `id: a shard token's id is at most ${maxShardSandboxIdLength} characters (the API appends "-<10 hex>" to scope it to the shard); shorten it`,
    );
  }
  const scope = createHash("sha256").update(`${principal.uid}\n${requested}`).digest("hex");
  return `${requested}-${scope.slice(0, 10)}`;
}

/** Options of {@link sandboxesApp}. */
export interface SandboxesAppOptions {
  /** Bearer token sent to node agents. */
  agentToken?: string;
  /** See {@link ApiOptions.shardRegistries}. */
  shardRegistries?: readonly string[];
}

/** The sandboxes sub-app (`/v1/sandboxes`). */
export function sandboxesApp(store: Store, options: SandboxesAppOptions = {}): Hono<ApiEnv> {
  const { agentToken } = options;
  const app = new Hono<ApiEnv>();
  const authorization: Record<string, string> =
    agentToken === undefined ? {} : { authorization: `Bearer ${agentToken}` };
  const agent = (address: string, path: string, init: RequestInit = {}) =>
    callAgent(address, path, {
      ...init,
      headers: { ...(init.headers as Record<string, string> | undefined), ...authorization },
    });

  app.post("/", async (c) => {
    const query = parseQuery(c, createSandboxQuerySchema);
    const { id: requestedId, ...body } = await parseJsonBody(c, createSandboxBodySchema);
    const spec: SandboxSpec = body;
    const principal = principalOf(c);
    if (principal.kind === "shard") {
      if (spec.shard !== undefined && spec.shard !== principal.shard) {
        throw new HttpError(
          403,
          "forbidden",
          `the token of shard ${principal.shard} cannot create sandboxes in shard ${spec.shard}`,
        );
      }
      spec.shard = principal.shard;
      // An `oci:` layout is a path on whichever node runs it: only the platform may name one.
      if (spec.image.startsWith("oci:")) {
        throw new HttpError(
          403,
          "forbidden",
          `image: "oci:" layout paths are for the platform token only; a shard token must use a registry reference (host/repository:tag or @sha256:…)`,
        );
      }
      checkShardRegistry(spec.image, options.shardRegistries);
      spec.shardUid = principal.uid;
    } else if (spec.shard !== undefined) {
      // The platform creating into a shard binds the sandbox to that shard as it is now.
      const shard = await store.client.get(keys.shard(spec.shard)).exec();
      const kv = shard.kvs[0];
      if (kv) spec.shardUid = shardUidOf(decode(shardRecordSchema, kv));
    }
    const now = new Date().toISOString();
    const record: SandboxRecord = {
      id: sandboxId(principal, requestedId),
      spec,
      status: { phase: SandboxPhase.Pending, endpoints: {}, updatedAt: now },
      createdAt: now,
    };
    const created = await store.createSandbox(record);
    if (!query.wait) return c.json(record, 201);
    const abort = new AbortController();
    c.req.raw.signal.addEventListener("abort", () => abort.abort(), { once: true });
    const { record: latest, timedOut } = await waitForPhase(
      store,
      created,
      query.wait,
      query.timeout * 1000,
      abort.signal,
    );
    if (timedOut) c.header("x-shardworks-wait", "timeout");
    return c.json(latest, 201);
  });

  app.get("/", async (c) => {
    const query = parseQuery(c, listQuerySchema);
    const principal = principalOf(c);
    const { items } = await store.listSandboxes();
    const visible = items
      .map((i) => i.value)
      .filter((r) => canReachSandbox(principal, r))
      .filter((r) => query.shard === undefined || r.spec.shard === query.shard)
      .filter((r) => query.node === undefined || r.status.node === query.node)
      .filter((r) => query.phase === undefined || r.status.phase === query.phase);
    return c.json({ items: visible });
  });

  const load = async (
    c: { req: { param(name: "id"): string } } & { get(key: "principal"): Principal },
  ): Promise<Versioned<SandboxRecord>> => {
    const id = parseName(c.req.param("id"), "id");
    const found = await store.getSandbox(id);
    if (!found) throw sandboxNotFound(id);
    assertSandboxAccess(principalOf(c), found.value);
    return found;
  };

  app.get("/:id", async (c) => c.json((await load(c)).value));

  app.delete("/:id", async (c) => {
    const found = await load(c);
    await store.deleteSandbox(found.value.id);
    return c.json({ deleted: found.value.id });
  });

  app.get("/:id/logs", async (c) => {
    const { follow } = parseQuery(c, logsQuerySchema);
    const found = await load(c);
    const nodeName = found.value.status.node;
    if (nodeName === undefined) {
      throw new HttpError(
        409,
        "not_scheduled",
        `sandbox ${found.value.id} is ${found.value.status.phase} and has no logs yet; retry once it is running`,
      );
    }
    const node = await store.getNode(nodeName);
    if (!node)
      throw new HttpError(
        503,
        "node_unreachable",
        `node ${nodeName} of sandbox ${found.value.id} is gone; its logs went with it`,
      );
    const upstream = await agent(
      node.address,
      `/v1/sandboxes/${found.value.id}/logs?follow=${follow}`,
      {
        signal: c.req.raw.signal,
      },
    );
    return new Response(upstream.body, {
      status: 200,
      headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
    });
  });

  app.post("/:id/migrate", async (c) => {
    const { node: targetName } = await parseJsonBody(c, migrateBodySchema);
    let current = await load(c);
    const id = current.value.id;
    const sourceName = current.value.status.node;
    if (current.value.status.phase !== SandboxPhase.Running || sourceName === undefined) {
      throw new HttpError(
        409,
        "not_running",
        `sandbox ${id} is ${current.value.status.phase}; only running sandboxes can be migrated`,
      );
    }
    if (sourceName === targetName)
      throw new HttpError(
        409,
        "same_node",
        `sandbox ${id} already runs on ${targetName}; name another node`,
      );
    const [source, target] = await Promise.all([
      store.getNode(sourceName),
      store.getNode(targetName),
    ]);
    if (!target)
      throw new HttpError(
        404,
        "not_found",
        `node ${targetName} is not registered (see GET /v1/nodes)`,
      );
    if (!source) throw new HttpError(503, "node_unreachable", `source node ${sourceName} is gone`);
    if (target.driver !== source.driver) {
      throw new HttpError(
        409,
        "driver_mismatch",
        `node ${targetName} runs ${target.driver}, the sandbox runs on ${source.driver}; pick a ${source.driver} node`,
      );
    }
    current = await store.updateSandbox(
      {
        ...current.value,
        status: {
          ...current.value.status,
          phase: SandboxPhase.Migrating,
          updatedAt: new Date().toISOString(),
        },
      },
      current.modRevision,
    );
    const revert = async (reason: string): Promise<void> => {
      const latest = await store.getSandbox(id);
      if (latest?.value.status.phase === SandboxPhase.Migrating) {
        await store
          .updateSandbox(
            {
              ...latest.value,
              status: {
                ...latest.value.status,
                phase: SandboxPhase.Running,
                reason,
                updatedAt: new Date().toISOString(),
              },
            },
            latest.modRevision,
          )
          .catch(() => undefined);
      }
    };
    let accepted = false;
    try {
      const accept = (await (
        await agent(target.address, `/v1/sandboxes/${id}/accept-migration`, { method: "POST" })
      ).json()) as { port: number };
      accepted = true;
      const targetHost = target.address.slice(0, target.address.lastIndexOf(":"));
      await agent(source.address, `/v1/sandboxes/${id}/migrate`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ host: targetHost, port: accept.port }),
      });
      const adopted = (await (
        await agent(target.address, `/v1/sandboxes/${id}/adopt`, { method: "POST" })
      ).json()) as { endpoints: Record<string, string> };
      const moved = await store.moveSandbox(current, targetName, adopted.endpoints);
      return c.json(moved.value);
    } catch (error) {
      // The target must not keep a copy (the source, or nobody if it was deleted, runs it).
      if (accepted) {
        await agent(target.address, `/v1/sandboxes/${id}/abandon-migration`, {
          method: "POST",
        }).catch(() => undefined);
      }
      await revert(`migration to ${targetName} failed: ${(error as Error).message}`);
      throw error;
    }
  });

  return app;
}

/** The nodes sub-app (`/v1/nodes`). */
export function nodesApp(store: Store): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.get("/", async (c) => {
    parseQuery(c, nodesQuerySchema);
    // Nodes (agent addresses, capacity, what runs where) are the platform's: a shard has no use
    // for them, and an address is a target.
    if (principalOf(c).kind !== "platform") {
      throw new HttpError(
        403,
        "forbidden",
        "GET /v1/nodes needs the platform token; a shard token sees its sandboxes (GET /v1/sandboxes), not the nodes",
      );
    }
    const [nodes, { items }] = await Promise.all([store.listNodes(), store.listSandboxes()]);
    const allocated = new Map<
      string,
      { cpuMillis: number; memoryMiB: number; sandboxes: number }
    >();
    for (const { value } of items) {
      const node = value.status.node;
      if (
        node === undefined ||
        TERMINAL_PHASES.has(value.status.phase) ||
        value.status.phase === SandboxPhase.Pending
      )
        continue;
      const a = allocated.get(node) ?? { cpuMillis: 0, memoryMiB: 0, sandboxes: 0 };
      allocated.set(node, {
        cpuMillis: a.cpuMillis + value.spec.resources.cpuMillis,
        memoryMiB: a.memoryMiB + value.spec.resources.memoryMiB,
        sandboxes: a.sandboxes + 1,
      });
    }
    return c.json({
      items: nodes.map((n) => ({
        ...n,
        allocated: allocated.get(n.name) ?? { cpuMillis: 0, memoryMiB: 0, sandboxes: 0 },
      })),
    });
  });
  return app;
}

/** The whole scheduler API. */
export function createApi(options: ApiOptions): Hono<ApiEnv> {
  const { store } = options;
  const app = new Hono<ApiEnv>();
  app.use("*", requestId());
  app.use("*", async (c, next) => {
    await next();
    metrics.requests.inc({
      method: c.req.method,
      route: c.req.routePath,
      status: String(c.res.status),
    });
  });
  app.get("/healthz", async (c) => {
    try {
      await store.client.get(keys.nodesPrefix).exec();
      return c.json(
        options.version === undefined ? { ok: true } : { ok: true, version: options.version },
      );
    } catch (error) {
      throw new HttpError(
        503,
        "etcd_unavailable",
        `etcd does not answer: ${(error as Error).message}`,
      );
    }
  });
  app.get("/metrics", async (c) =>
    c.text(await registry.metrics(), 200, { "content-type": registry.contentType }),
  );

  app.use(
    "/v1/*",
    bodyLimit({
      maxSize: options.bodyLimitBytes ?? 1024 * 1024,
      onError: () => {
        throw new HttpError(
          413,
          "body_too_large",
          `the request body is larger than ${options.bodyLimitBytes ?? 1024 * 1024} bytes; send less`,
        );
      },
    }),
  );
  app.use("/v1/*", authMiddleware(store, options.platformToken));
  app.route(
    "/v1/sandboxes",
    sandboxesApp(store, {
      agentToken: options.agentToken ?? options.platformToken,
      ...(options.shardRegistries === undefined
        ? {}
        : { shardRegistries: options.shardRegistries }),
    }),
  );
  app.route("/v1/nodes", nodesApp(store));
  for (const mount of options.mounts ?? []) app.route(mount.path, mount.app);

  app.notFound((c) =>
    c.json(
      new HttpError(
        404,
        "not_found",
        `no endpoint ${c.req.method} ${c.req.path} (see docs/readme/runtime.md for the API)`,
      ).toJSON(),
      404,
    ),
  );
  app.onError((error, c) => {
    if (error instanceof HttpError) return c.json(error.toJSON(), error.status);
    // etcd away is not our bug: 503 + Retry-After, so clients retry (defect 7 of issue 13).
    const unavailable = storeUnavailableError(error);
    if (unavailable) {
      c.header("retry-after", String(STORE_RETRY_AFTER_SECONDS));
      return c.json(unavailable.toJSON(), 503);
    }
    const id = c.get("requestId");
    logger.error(
      { err: error, requestId: id, path: c.req.path },
      "unhandled error in scheduler API",
    );
    return c.json(
      {
        error: {
          code: "internal",
          message: `internal error; quote request id ${id} when reporting it`,
        },
      },
      500,
    );
  });
  return app;
}
