/**
 * The scheduler's HTTP API (Hono). `createApi` composes it from the edge kit (`lib/http`):
 * request ids, metrics, body limit, the auth middleware that sets the principal
 * (`routes/auth.ts`), the sandboxes and nodes sub-apps (`routes/`), and sub-apps mounted through
 * `mounts` (e.g. `/v1/shards`). Errors are rendered once, by the kit.
 */
import type { Hono } from "hono";
import { UnavailableError } from "../lib/errors";
import { createServiceApp, type ApiEnv } from "../lib/http";
import { keys } from "../lib/keys";
import { STORE_RETRY_AFTER_SECONDS, type Store } from "../lib/store";
import { AgentClient } from "./agent-client";
import { metrics, registry } from "./metrics";
import { authMiddleware } from "./routes/auth";
import { nodesApp } from "./routes/nodes";
import { sandboxesApp } from "./routes/sandboxes";

export { authMiddleware } from "./routes/auth";
export { nodesApp } from "./routes/nodes";
export { sandboxesApp, type SandboxesAppOptions } from "./routes/sandboxes";
export {
  assertSandboxAccess,
  canReachSandbox,
  checkShardRegistry,
  maxShardSandboxIdLength,
  sandboxId,
} from "./sandbox-access";

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
  /**
   * Whether shard tokens may ask for `network: true`. Default false: a networked sandbox reaches
   * every address its node reaches (slirp4netns connects from the node), so a platform allows it
   * only once the nodes' egress is firewalled. The platform token may either way.
   */
  shardNetwork?: boolean;
}

/** The whole scheduler API. */
export function createApi(options: ApiOptions): Hono<ApiEnv> {
  const { store } = options;
  const app = createServiceApp<ApiEnv>({
    service: "scheduler API",
    docs: "docs/readme/runtime.md for the API",
    ...(options.bodyLimitBytes === undefined ? {} : { bodyLimitBytes: options.bodyLimitBytes }),
  });
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
      // The same Retry-After as every other store_unavailable answer: probes and rollout gates
      // back off like any client.
      throw new UnavailableError(
        "etcd_unavailable",
        `etcd does not answer; retry in ${STORE_RETRY_AFTER_SECONDS} s`,
        { cause: error, retryAfterSeconds: STORE_RETRY_AFTER_SECONDS },
      );
    }
  });
  app.get("/metrics", async (c) =>
    c.text(await registry.metrics(), 200, { "content-type": registry.contentType }),
  );

  app.use("/v1/*", authMiddleware(store, options.platformToken));
  app.route(
    "/v1/sandboxes",
    sandboxesApp(store, {
      agents: new AgentClient(options.agentToken ?? options.platformToken),
      ...(options.shardRegistries === undefined
        ? {}
        : { shardRegistries: options.shardRegistries }),
      shardNetwork: options.shardNetwork === true,
    }),
  );
  app.route("/v1/nodes", nodesApp(store));
  for (const mount of options.mounts ?? []) app.route(mount.path, mount.app);
  return app;
}
