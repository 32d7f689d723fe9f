/** The node agent's API on the edge kit: the same body limit and error body as the scheduler's. */
import test from "ava";
import { createAgentApi, type AgentApiHooks } from "../../runtime/node-agent/http";

const calls: string[] = [];
const hooks: AgentApiHooks = {
  logFile: () => "/nonexistent",
  isRunning: () => false,
  acceptMigration: () => Promise.resolve({ port: 1 }),
  migrateOut: (id, host, port) => {
    calls.push(`${id} ${host}:${port}`);
    return Promise.resolve();
  },
  adopt: () => Promise.resolve({ endpoints: {} }),
  abandonMigration: () => Promise.resolve({ abandoned: false }),
  capabilities: () => undefined,
};

const migrate = (body: string) =>
  createAgentApi(hooks, "agent-secret").request("/v1/sandboxes/sbx-1/migrate", {
    method: "POST",
    headers: { authorization: "Bearer agent-secret", "content-type": "application/json" },
    body,
  });

test.serial(
  "a body over the limit is a 413 body_too_large, and never reaches the agent",
  async (t) => {
    calls.length = 0;
    const huge = JSON.stringify({ host: "10.0.0.2", port: 7070, pad: "x".repeat(2 * 1024 * 1024) });
    const response = await migrate(huge);
    t.is(response.status, 413);
    const body = (await response.json()) as { error: { code: string; message: string } };
    t.is(body.error.code, "body_too_large");
    t.regex(body.error.message, /larger than 1048576 bytes/);
    t.deepEqual(calls, []);
  },
);

test.serial("a body within the limit is parsed and handed to the agent", async (t) => {
  calls.length = 0;
  const response = await migrate(JSON.stringify({ host: "10.0.0.2", port: 7070 }));
  t.is(response.status, 200, await response.clone().text());
  t.deepEqual(calls, ["sbx-1 10.0.0.2:7070"]);
});
