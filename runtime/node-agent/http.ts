/**
 * The node agent's own small HTTP API, used by the scheduler: sandbox logs (follow mode streams
 * the file as it grows) and the three steps of a live migration. It listens on the node's
 * internal address only.
 */
import { open, stat } from "node:fs/promises";
import type { Hono } from "hono";
import { NotFoundError } from "../lib/errors";
import {
  createServiceApp,
  parseJsonBody,
  parseParam,
  requireBearer,
  type ServiceEnv,
} from "../lib/http";
import { migrateRequestSchema } from "../../contract/api";
import { dnsLabel } from "../../contract/model";
import type { DriverCapabilities } from "./driver";

/** What the HTTP API asks of the agent. */
export interface AgentApiHooks {
  logFile(id: string): string;
  /** True while the sandbox runs (or is starting) here: follow mode keeps streaming until false. */
  isRunning(id: string): boolean;
  acceptMigration(id: string): Promise<{ port: number }>;
  migrateOut(id: string, host: string, port: number): Promise<void>;
  adopt(id: string): Promise<{ endpoints: Record<string, string> }>;
  /** The migration of `id` to this node failed: stop whatever arrived (or is arriving). */
  abandonMigration(id: string): Promise<{ abandoned: boolean }>;
  capabilities(): DriverCapabilities | undefined;
}

/** Stream a file from the start; with `follow`, keep streaming what is appended while `alive()`. */
export function streamFile(
  path: string,
  follow: boolean,
  alive: () => boolean,
  signal: AbortSignal,
): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const buffer = Buffer.alloc(64 * 1024);
      for (;;) {
        if (signal.aborted) return controller.close();
        const handle = await open(path, "r").catch(() => undefined);
        if (handle) {
          try {
            const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
            if (bytesRead > 0) {
              offset += bytesRead;
              controller.enqueue(new Uint8Array(buffer.subarray(0, bytesRead)));
              return;
            }
          } finally {
            await handle.close();
          }
        }
        // At the end of the file: stop unless following a sandbox that still runs. Check liveness
        // first, then read once more, so output written just before the exit is not lost.
        if (!follow) return controller.close();
        if (!alive()) {
          const size = await stat(path).then(
            (s) => s.size,
            () => 0,
          );
          if (size <= offset) return controller.close();
          continue;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  });
}

/**
 * Build the agent API app. With `token`, every `/v1` call must present it as a bearer token (the
 * scheduler does); without, the API is open — only for tests on loopback.
 */
export function createAgentApi(hooks: AgentApiHooks, token?: string): Hono<ServiceEnv> {
  const app = createServiceApp<ServiceEnv>({
    service: "node agent API",
    docs: "docs/readme/runtime.md",
  });
  if (token !== undefined) {
    app.use(
      "/v1/*",
      requireBearer(
        token,
        "the node agent API needs the agent token (authorization: Bearer <token>); only the scheduler calls it",
      ),
    );
  }
  const idOf = (raw: string): string => parseParam(raw, dnsLabel, "id");
  app.get("/healthz", (c) => c.json({ ok: true, capabilities: hooks.capabilities() }));
  app.get("/v1/sandboxes/:id/logs", async (c) => {
    const id = idOf(c.req.param("id"));
    const follow = c.req.query("follow") === "true" || c.req.query("follow") === "1";
    const path = hooks.logFile(id);
    const exists = await stat(path).then(
      () => true,
      () => false,
    );
    if (!exists && !hooks.isRunning(id))
      throw new NotFoundError("not_found", `no logs for sandbox ${id} on this node`);
    return new Response(
      streamFile(path, follow, () => hooks.isRunning(id), c.req.raw.signal),
      {
        headers: { "content-type": "text/plain; charset=utf-8" },
      },
    );
  });
  app.post("/v1/sandboxes/:id/accept-migration", async (c) =>
    c.json(await hooks.acceptMigration(idOf(c.req.param("id")))),
  );
  app.post("/v1/sandboxes/:id/migrate", async (c) => {
    const id = idOf(c.req.param("id"));
    const { host, port } = await parseJsonBody(c, migrateRequestSchema);
    await hooks.migrateOut(id, host, port);
    return c.json({ migrated: true });
  });
  app.post("/v1/sandboxes/:id/adopt", async (c) =>
    c.json(await hooks.adopt(idOf(c.req.param("id")))),
  );
  app.post("/v1/sandboxes/:id/abandon-migration", async (c) =>
    c.json(await hooks.abandonMigration(idOf(c.req.param("id")))),
  );
  return app;
}
