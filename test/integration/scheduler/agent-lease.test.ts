import { join } from "node:path";
import test from "ava";
import { keys, type SandboxRecord } from "../../../runtime/lib";
import { NodeAgent } from "../../../runtime/node-agent/agent";
import { createDriver } from "../../../runtime/node-agent/drivers";
import { allSandboxes, api, eventually, schedulerWithImage } from "../../helpers/runtime";

test("an agent whose lease is lost registers again, and its sandbox runs again", async (t) => {
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
  // The placer sees the node vanish and puts the sandbox back to pending; the agent registers again
  // (new lease), stops the copy that lost its assignment, and the sandbox is placed and run again.
  await eventually("node registered again with a new lease", async () => {
    const again = (await etcd.client.get(keys.node("flaky")).exec()).kvs[0];
    return again && again.lease !== kv.lease ? true : undefined;
  });
  const back = await eventually(
    "running again on the node",
    async () => {
      const s = (await allSandboxes(etcd.client)).find((x) => x.id === "survives");
      return s?.status.phase === "running" &&
        s.status.node === "flaky" &&
        s.status.reason === undefined
        ? s
        : undefined;
    },
    30_000,
  );
  t.is(back.status.node, "flaky");
  t.log(
    `phases after the lease was revoked: ${phases.join(" → ") || "(none: re-registered before the placer looked)"}`,
  );
  t.deepEqual(agent.running, ["survives"], "exactly one copy runs on the node");
  t.true(errors.length > 0, "the lost lease was reported as an event, not a crash");
});
