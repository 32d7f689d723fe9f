/** The node agent's HTTP API demands the agent token; the scheduler presents it. */
import { join } from "node:path";
import test from "ava";
import type { SandboxRecord } from "../../../runtime/lib";
import { NodeAgent } from "../../../runtime/node-agent/agent";
import { createDriver } from "../../../runtime/node-agent/drivers";
import { PLATFORM_TOKEN, api, schedulerWithImage } from "../../helpers/runtime";

test("an agent with an API token refuses callers without it; logs still flow through the scheduler", async (t) => {
  const { etcd, dir, image, scheduler } = await schedulerWithImage(t, "sw-agent-auth-");
  const agent = new NodeAgent({
    name: "auth-node",
    etcdEndpoints: [etcd.endpoint],
    driver: createDriver("process", { imageStore: { cacheDir: join(dir, "cache") } }),
    capacity: { cpuMillis: 4000, memoryMiB: 4096 },
    dataDir: join(dir, "data"),
    warmPerImage: 0,
    apiToken: PLATFORM_TOKEN,
  });
  await agent.start();
  t.teardown(() => agent.close());
  const created = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes?wait=exited&timeout=60", {
    method: "POST",
    body: JSON.stringify({ id: "secret-log", image, command: ["echo", "private output"] }),
  });
  t.is(created.body.status.phase, "exited", JSON.stringify(created.body.status));

  const direct = `http://${agent.address}/v1/sandboxes/secret-log/logs`;
  const anonymous = await fetch(direct);
  t.is(anonymous.status, 401);
  t.regex(await anonymous.text(), /needs the agent token/);
  const wrong = await fetch(direct, { headers: { authorization: "Bearer not-the-token" } });
  t.is(wrong.status, 401);
  const migrate = await fetch(`http://${agent.address}/v1/sandboxes/secret-log/migrate`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ host: "127.0.0.1", port: 1 }),
  });
  t.is(migrate.status, 401, "migration cannot be triggered without the token");

  // With the token, a sandbox's memory still goes only to a registered node's host.
  const migrateTo = (host: string) =>
    fetch(`http://${agent.address}/v1/sandboxes/secret-log/migrate`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${PLATFORM_TOKEN}` },
      body: JSON.stringify({ host, port: 4444 }),
    });
  const elsewhere = await migrateTo("169.254.169.254");
  t.is(elsewhere.status, 403);
  t.regex(
    await elsewhere.text(),
    /host 169\.254\.169\.254 is not the address of a registered node/,
  );
  const toNode = await migrateTo("127.0.0.1"); // this node's own host: allowed past the check
  t.is(toNode.status, 404);
  t.regex(await toNode.text(), /secret-log is not running on auth-node/);

  const viaScheduler = await fetch(`${scheduler.url}/v1/sandboxes/secret-log/logs`, {
    headers: { authorization: `Bearer ${PLATFORM_TOKEN}` },
  });
  t.is(viaScheduler.status, 200);
  t.is(await viaScheduler.text(), "private output\n");
});
