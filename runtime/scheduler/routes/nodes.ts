/** `/v1/nodes`: the registered nodes with what is allocated on each (platform token only). */
import { Hono } from "hono";
import { ForbiddenError } from "../../lib/errors";
import { parseQuery, type ApiEnv } from "../../lib/http";
import { SandboxPhase } from "../../../contract/model";
import { TERMINAL_PHASES, type Store } from "../../lib/store";
import { nodesQuerySchema } from "../validation";
import { principalOf } from "./auth";

/** The nodes sub-app (`/v1/nodes`). */
export function nodesApp(store: Store): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.get("/", async (c) => {
    parseQuery(c, nodesQuerySchema);
    // Nodes (agent addresses, capacity, what runs where) are the platform's: a shard has no use
    // for them, and an address is a target.
    if (principalOf(c).kind !== "platform") {
      throw new ForbiddenError(
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
