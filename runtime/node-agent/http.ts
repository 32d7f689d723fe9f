/**
 * The node agent's own small HTTP API, used by the scheduler: sandbox logs (follow mode streams
 * the file as it grows) and the three steps of a live migration. It listens on the node's
 * internal address only.
 */
import { open, stat } from "node:fs/promises";
import { Hono } from "hono";
import { digestsEqual, hashToken } from "../lib/auth";
import { z } from "zod";
import { HttpError, badRequest } from "../lib/errors";
import { logger } from "../lib/logger";
import { dnsLabel } from "../lib/model";
import { STORE_RETRY_AFTER_SECONDS, storeUnavailableError } from "../lib/store";
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

const migrateBody = z.strictObject({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535),
});

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
export function createAgentApi(hooks: AgentApiHooks, token?: string): Hono {
  const app = new Hono();
  if (token !== undefined) {
    const expected = hashToken(token);
    app.use("/v1/*", async (c, next) => {
      const given = /^Bearer (.+)$/.exec(c.req.header("authorization") ?? "")?.[1];
      if (given === undefined || !digestsEqual(hashToken(given), expected)) {
        throw new HttpError(
          401,
          "unauthorized",
          "the node agent API needs the agent token (authorization: Bearer <token>); only the scheduler calls it",
        );
      }
      await next();
    });
  }
  const idOf = (raw: string): string => {
    const parsed = dnsLabel.safeParse(raw);
    if (!parsed.success) throw badRequest(parsed.error, "id");
    return parsed.data;
  };
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
      throw new HttpError(404, "not_found", `no logs for sandbox ${id} on this node`);
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
    const parsed = migrateBody.safeParse(await c.req.json().catch(() => undefined));
    if (!parsed.success) throw badRequest(parsed.error);
    await hooks.migrateOut(idOf(c.req.param("id")), parsed.data.host, parsed.data.port);
    return c.json({ migrated: true });
  });
  app.post("/v1/sandboxes/:id/adopt", async (c) =>
    c.json(await hooks.adopt(idOf(c.req.param("id")))),
  );
  app.post("/v1/sandboxes/:id/abandon-migration", async (c) =>
    c.json(await hooks.abandonMigration(idOf(c.req.param("id")))),
  );
  app.onError((error, c) => {
    if (error instanceof HttpError) return c.json(error.toJSON(), error.status);
    const unavailable = storeUnavailableError(error);
    if (unavailable) {
      c.header("retry-after", String(STORE_RETRY_AFTER_SECONDS));
      return c.json(unavailable.toJSON(), 503);
    }
    logger.error({ err: error, path: c.req.path }, "node agent API error");
    return c.json({ error: { code: "internal", message: error.message } }, 500);
  });
  return app;
}
