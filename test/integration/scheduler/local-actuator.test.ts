import { join } from "node:path";
import test from "ava";
import type { SandboxRecord } from "../../../runtime/lib";
import { Store } from "../../../runtime/lib/store";
import { Autoscaler, LocalNodeActuator } from "../../../runtime/scheduler";
import {
  allSandboxes,
  api,
  etcdFor,
  eventually,
  schedulerFor,
  schedulerWithImage,
  tempDirFor,
} from "../../helpers/runtime";
import { actuatorConformance } from "./actuator-conformance";

const agent = {
  driver: "process",
  cpuMillis: 1000,
  memoryMiB: 1024,
  leaseTtlSeconds: 5,
};

actuatorConformance("LocalNodeActuator", async (t, etcd) => {
  const dir = await tempDirFor(t, "sw-actuator-");
  return new LocalNodeActuator({
    store: new Store(etcd.client),
    etcdEndpoints: [etcd.endpoint],
    dataDir: dir,
    agent,
  });
});

test("the autoscaler starts node agents for pending sandboxes and stops idle ones", async (t) => {
  const { etcd, dir, image, scheduler } = await schedulerWithImage(t, "sw-autoscale-");
  const store = new Store(etcd.client);
  const actuator = new LocalNodeActuator({
    store,
    etcdEndpoints: [etcd.endpoint],
    dataDir: dir,
    agent,
  });
  t.teardown(() => actuator.close());
  const autoscaler = new Autoscaler(store, actuator, {
    nodeCapacity: { cpuMillis: 1000, memoryMiB: 1024 },
    headroom: 0,
    min: 0,
    max: 3,
    intervalMs: 500,
  });
  t.teardown(() => autoscaler.close());
  // 3 × 600m cannot share a 1000m node: no nodes yet, so all pending; the autoscaler wants 2 (1800m / 1000m).
  for (let i = 0; i < 3; i++) {
    const r = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes", {
      method: "POST",
      body: JSON.stringify({
        id: `w-${i}`,
        image,
        command: ["sleep", "600"],
        resources: { cpuMillis: 600, memoryMiB: 100 },
      }),
    });
    t.is(r.status, 201);
  }
  const decisions: { current: number; desired: number }[] = [];
  autoscaler.events.on("decision", (d) => decisions.push(d));
  autoscaler.start();
  // 2 nodes come up; 2 sandboxes run; the 3rd still pends (no node fits), so demand stays 1800m → 2 nodes.
  await eventually(
    "two running",
    async () =>
      (await allSandboxes(etcd.client)).filter((s) => s.status.phase === "running").length === 2
        ? true
        : undefined,
    60_000,
  );
  t.is((await actuator.list()).length, 2);
  t.deepEqual(decisions[0], { current: 0, desired: 2 });
  // Delete everything: the nodes go idle and the autoscaler stops them.
  for (let i = 0; i < 3; i++)
    await api(scheduler.url, `/v1/sandboxes/w-${i}`, { method: "DELETE" });
  await eventually(
    "scaled to zero",
    async () =>
      (await actuator.list()).length === 0 && (await store.listNodes()).length === 0
        ? true
        : undefined,
    60_000,
  );
  t.pass();
});

test("with two scheduler replicas only the elected placer's autoscaler acts, and the other takes over", async (t) => {
  const etcd = await etcdFor(t);
  const dir = await tempDirFor(t, "sw-autoscale-ha-");
  const store = new Store(etcd.client);
  const config = {
    nodeCapacity: { cpuMillis: 1000, memoryMiB: 1024 },
    min: 1,
    max: 2,
    intervalMs: 300,
  };
  const actuators = ["a", "b"].map((prefix) => {
    const actuator = new LocalNodeActuator({
      store,
      etcdEndpoints: [etcd.endpoint],
      dataDir: join(dir, prefix),
      prefix,
      agent,
    });
    t.teardown(() => actuator.close());
    return actuator;
  });
  const first = await schedulerFor(
    t,
    etcd,
    { name: "first" },
    { autoscaler: { actuator: actuators[0]!, config } },
  );
  await eventually("first leads", () => Promise.resolve(first.placer!.leading ? true : undefined));
  const second = await schedulerFor(
    t,
    etcd,
    { name: "second" },
    { autoscaler: { actuator: actuators[1]!, config } },
  );
  // min 1: the leader's actuator starts one node; the follower's starts none.
  await eventually(
    "one node from the leader",
    async () => ((await store.listNodes()).length === 1 ? true : undefined),
    60_000,
  );
  await new Promise((r) => setTimeout(r, 1500));
  t.deepEqual(await actuators[0]!.list(), ["a-0"]);
  t.deepEqual(await actuators[1]!.list(), []);
  await first.close();
  await eventually("second leads", () =>
    Promise.resolve(second.placer!.leading ? true : undefined),
  );
  await eventually(
    "the new leader's actuator starts its node",
    async () => ((await actuators[1]!.list()).length === 1 ? true : undefined),
    60_000,
  );
  t.deepEqual(await actuators[1]!.list(), ["b-0"]);
});
