import { join } from "node:path";
import test from "ava";
import { keys, type SandboxRecord } from "../../../runtime/lib";
import { NodeAgent } from "../../../runtime/node-agent/agent";
import { createDriver } from "../../../runtime/node-agent/drivers";
import { allSandboxes, api, eventually, schedulerWithImage } from "../../helpers/runtime";

test("an agent whose lease is lost registers again; its begun sandbox is failed and stopped, not run twice; new ones run", async (t) => {
  const { etcd, dir, image, scheduler } = await schedulerWithImage(t, "sw-lease-");
  const agent = new NodeAgent({
    name: "flaky",
    etcdEndpoints: [etcd.endpoint],
    driver: createDriver("process"),
    capacity: { cpuMillis: 1000, memoryMiB: 1024 },
    dataDir: join(dir, "flaky"),
    leaseTtlSeconds: 2,
  });
  const errors: Error[] = [];
  agent.events.on("error", (e) => errors.push(e));
  t.teardown(() => agent.close());
  await agent.start();
  const created = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes?wait=running&timeout=60", {
    method: "POST",
    body: JSON.stringify({ id: "survives", image, command: ["sleep", "600"] }),
  });
  t.is(created.body.status.phase, "running");

  // Revoke the node's lease behind the agent's back (what an expired lease after a long pause does).
  const kv = (await etcd.client.get(keys.node("flaky")).exec()).kvs[0]!;
  const phases: string[] = [];
  const watcher = await etcd.client.watch().key(keys.sandbox("survives")).create();
  watcher.on("put", (put) =>
    phases.push((JSON.parse(put.value.toString()) as SandboxRecord).status.phase),
  );
  t.teardown(() => watcher.cancel());
  await etcd.client.leaseClient.leaseRevoke({ ID: kv.lease });
  // The placer sees the node vanish and fails the sandbox (its run began: never started again)
  // and drops its assignment; the agent registers again (new lease) and stops the copy that lost
  // its assignment. The node serves new sandboxes as before.
  await eventually("node registered again with a new lease", async () => {
    const again = (await etcd.client.get(keys.node("flaky")).exec()).kvs[0];
    return again && again.lease !== kv.lease ? true : undefined;
  });
  const failed = await eventually(
    "the begun sandbox failed",
    async () => {
      const s = (await allSandboxes(etcd.client)).find((x) => x.id === "survives");
      return s?.status.phase === "failed" ? s : undefined;
    },
    30_000,
  );
  t.regex(failed.status.reason ?? "", /node flaky was lost while the sandbox was running/);
  t.log(`phases after the lease was revoked: ${phases.join(" → ")}`);
  t.false(phases.includes("pending"), "never put back to pending: it would run a second time");
  await eventually("the agent stopped its copy", () =>
    Promise.resolve(agent.running.length === 0 ? true : undefined),
  );
  const next = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes?wait=running&timeout=60", {
    method: "POST",
    body: JSON.stringify({ id: "afterwards", image, command: ["sleep", "600"] }),
  });
  t.is(next.body.status.phase, "running");
  t.is(next.body.status.node, "flaky");
  t.deepEqual(agent.running, ["afterwards"], "exactly one copy runs on the node");
  t.true(errors.length > 0, "the lost lease was reported as an event, not a crash");
});
