/** `/v1/sandboxes`: create (optionally waiting for a phase), list, get, delete, logs, migrate. */
import { Hono } from "hono";
import { ConflictError, DomainError, ForbiddenError, UnavailableError } from "../../lib/errors";
import { parseJsonBody, parseParam, parseQuery, type ApiEnv } from "../../lib/http";
import { keys } from "../../lib/keys";
import {
  dnsLabel,
  type SandboxRecord,
  type SandboxSpec,
  SandboxPhase,
  shardRecordSchema,
  shardUidOf,
} from "../../../contract/model";
import { decode, type Store, type Versioned } from "../../lib/store";
import type { AgentClient } from "../agent-client";
import { migrateSandbox } from "../migration";
import {
  assertSandboxAccess,
  canReachSandbox,
  checkShardRegistry,
  sandboxId,
  sandboxNotFound,
} from "../sandbox-access";
import {
  createSandboxBodySchema,
  createSandboxQuerySchema,
  listQuerySchema,
  logsQuerySchema,
  migrateBodySchema,
} from "../validation";
import { waitForPhase } from "../wait";
import { principalOf } from "./auth";

/** Options of {@link sandboxesApp}. */
export interface SandboxesAppOptions {
  /** The client of the node agents (logs, migration). */
  agents: AgentClient;
  /**
   * Registries (`host[:port]`) shard tokens may pull from; unset: any public registry (see
   * `ApiOptions.shardRegistries`).
   */
  shardRegistries?: readonly string[];
  /** Whether shard tokens may ask for `network: true` (see `ApiOptions.shardNetwork`). */
  shardNetwork?: boolean;
}

/** The sandboxes sub-app (`/v1/sandboxes`). */
export function sandboxesApp(store: Store, options: SandboxesAppOptions): Hono<ApiEnv> {
  const { agents } = options;
  const app = new Hono<ApiEnv>();

  app.post("/", async (c) => {
    const query = parseQuery(c, createSandboxQuerySchema);
    const { id: requestedId, ...body } = await parseJsonBody(c, createSandboxBodySchema);
    const spec: SandboxSpec = body;
    const principal = principalOf(c);
    if (principal.kind === "shard") {
      if (spec.shard !== undefined && spec.shard !== principal.shard) {
        throw new ForbiddenError(
          "forbidden",
          `the token of shard ${principal.shard} cannot create sandboxes in shard ${spec.shard}`,
        );
      }
      spec.shard = principal.shard;
      // An `oci:` layout is a path on whichever node runs it: only the platform may name one.
      if (spec.image.startsWith("oci:")) {
        throw new ForbiddenError(
          "forbidden",
          `image: "oci:" layout paths are for the platform token only; a shard token must use a registry reference (host/repository:tag or @sha256:…)`,
        );
      }
      if (spec.network && options.shardNetwork !== true) {
        throw new ForbiddenError(
          "forbidden",
          "network: a shard's sandbox has no network on this platform (a networked sandbox reaches every address its node reaches: the cloud's metadata service, the node's own services, the private network); leave network out, or ask the platform team to allow it (SHARDWORKS_SHARD_NETWORK=allow, once the nodes' egress is firewalled)",
        );
      }
      spec.registryAccess = checkShardRegistry(spec.image, options.shardRegistries);
      spec.shardUid = principal.uid;
    } else {
      spec.registryAccess = "any";
    }
    if (principal.kind === "platform" && spec.shard !== undefined) {
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
    c: { req: { param(name: "id"): string } } & {
      get(key: "principal"): ApiEnv["Variables"]["principal"];
    },
  ): Promise<Versioned<SandboxRecord>> => {
    const id = parseParam(c.req.param("id"), dnsLabel, "id");
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
      throw new ConflictError(
        "not_scheduled",
        `sandbox ${found.value.id} is ${found.value.status.phase} and has no logs yet; retry once it is running`,
      );
    }
    const node = await store.getNode(nodeName);
    if (!node)
      throw new UnavailableError(
        "node_unreachable",
        `node ${nodeName} of sandbox ${found.value.id} is gone; its logs went with it`,
      );
    const body = await agents
      .logs(node.address, found.value.id, follow, c.req.raw.signal)
      .catch((error: unknown) => {
        // An agent's address is the platform's: a shard token is told only that it failed.
        if (principalOf(c).kind === "platform" || !(error instanceof DomainError)) throw error;
        throw new UnavailableError(
          error.code,
          `the node running sandbox ${found.value.id} did not serve its logs; retry later`,
        );
      });
    return new Response(body, {
      status: 200,
      headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
    });
  });

  app.post("/:id/migrate", async (c) => {
    // Which nodes exist, their drivers and what fits where are the platform's: a shard token
    // would learn them from the answers, and could pick a node placement would not.
    if (principalOf(c).kind !== "platform") {
      throw new ForbiddenError(
        "forbidden",
        "POST /v1/sandboxes/{id}/migrate needs the platform token; a shard token cannot move sandboxes between nodes",
      );
    }
    const { node } = await parseJsonBody(c, migrateBodySchema);
    const moved = await migrateSandbox(store, agents, await load(c), node);
    return c.json(moved.value);
  });

  return app;
}
