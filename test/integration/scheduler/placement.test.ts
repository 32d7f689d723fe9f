import test from "ava";
import { Store } from "../../../runtime/lib/store";
import {
  allSandboxes,
  api,
  assignmentPutsById,
  etcdFor,
  eventually,
  registerNode,
  schedulerFor,
} from "../../helpers/runtime";

const image = "oci:/tmp/none:latest";
const small = { cpuMillis: 100, memoryMiB: 64 };

test("100 concurrent submissions: every node stays within capacity, the rest wait and are placed when capacity appears", async (t) => {
  const etcd = await etcdFor(t);
  const scheduler = await schedulerFor(t, etcd);
  // 3 nodes of 1000m/1024MiB: room for 30 sandboxes of 100m by CPU.
  for (const name of ["n1", "n2", "n3"])
    await registerNode(t, etcd.client, name, { cpuMillis: 1000, memoryMiB: 1024 });
  const responses = await Promise.all(
    Array.from({ length: 100 }, (_, i) =>
      api(scheduler.url, "/v1/sandboxes", {
        method: "POST",
        body: JSON.stringify({ id: `c-${i}`, image, command: ["true"], resources: small }),
      }),
    ),
  );
  t.deepEqual(new Set(responses.map((r) => r.status)), new Set([201]));
  const placed = await eventually("30 placements", async () => {
    const all = await allSandboxes(etcd.client);
    const scheduled = all.filter((s) => s.status.phase === "scheduled");
    return scheduled.length === 30 ? all : undefined;
  });
  await new Promise((r) => setTimeout(r, 500));
  const perNode = new Map<string, number>();
  for (const s of await allSandboxes(etcd.client))
    if (s.status.node)
      perNode.set(s.status.node, (perNode.get(s.status.node) ?? 0) + s.spec.resources.cpuMillis);
  t.deepEqual(
    Object.fromEntries(perNode),
    { n1: 1000, n2: 1000, n3: 1000 },
    "bin-packed to exactly capacity, never over",
  );
  const pending = placed.filter((s) => s.status.phase === "pending");
  t.is(pending.length, 70);
  t.regex(
    (await allSandboxes(etcd.client)).find((s) => s.status.phase === "pending")!.status.reason ??
      "",
    /no node fits \(3 node\(s\): not enough CPU\)/,
  );

  // Capacity appears: a big node registers and the pending ones are placed on it.
  await registerNode(t, etcd.client, "n4", { cpuMillis: 8000, memoryMiB: 8192 });
  await eventually("all 100 placed", async () =>
    (await allSandboxes(etcd.client)).every((s) => s.status.phase === "scheduled")
      ? true
      : undefined,
  );
  const puts = await assignmentPutsById(etcd.client);
  t.is(puts.size, 100);
  t.true(
    [...puts.values()].every((nodes) => nodes.length === 1),
    "each sandbox assigned exactly once",
  );
  const nodes = (
    await api<{
      items: { name: string; allocated: { cpuMillis: number }; capacity: { cpuMillis: number } }[];
    }>(scheduler.url, "/v1/nodes")
  ).body.items;
  for (const n of nodes)
    t.true(n.allocated.cpuMillis <= n.capacity.cpuMillis, `${n.name} within capacity`);
  t.is(nodes.find((n) => n.name === "n4")!.allocated.cpuMillis, 7000);
});

test("two schedulers at once: one elected placer, each sandbox placed exactly once, even when the leader dies midway", async (t) => {
  const etcd = await etcdFor(t);
  const a = await schedulerFor(t, etcd, { name: "sched-a" });
  const b = await schedulerFor(t, etcd, { name: "sched-b" });
  await eventually("a leader", () =>
    Promise.resolve(a.placer!.leading || b.placer!.leading ? true : undefined),
  );
  t.not(a.placer!.leading, b.placer!.leading, "exactly one of the two leads");
  for (const name of ["m1", "m2", "m3", "m4"])
    await registerNode(t, etcd.client, name, { cpuMillis: 4000, memoryMiB: 4096 });
  const submit = (base: string, i: number) =>
    api(base, "/v1/sandboxes", {
      method: "POST",
      body: JSON.stringify({ id: `d-${i}`, image, command: ["true"], resources: small }),
    });
  // Half through each API replica, concurrently.
  const first = await Promise.all(
    Array.from({ length: 60 }, (_, i) => submit(i % 2 ? a.url : b.url, i)),
  );
  t.true(first.every((r) => r.status === 201));
  // Kill the leader while placements are going on; the other takes over.
  const [leader, follower] = a.placer!.leading ? [a, b] : [b, a];
  await leader.close();
  const second = await Promise.all(
    Array.from({ length: 60 }, (_, i) => submit(follower.url, 60 + i)),
  );
  t.true(second.every((r) => r.status === 201));
  await eventually("the follower leads", () =>
    Promise.resolve(follower.placer!.leading ? true : undefined),
  );
  await eventually("all 120 placed", async () =>
    (await allSandboxes(etcd.client)).filter((s) => s.status.phase === "scheduled").length === 120
      ? true
      : undefined,
  );
  const puts = await assignmentPutsById(etcd.client);
  t.is(puts.size, 120);
  t.deepEqual(
    [...puts.entries()].filter(([, nodes]) => nodes.length !== 1),
    [],
    "no sandbox assigned twice",
  );
  const store = new Store(etcd.client);
  for (const name of ["m1", "m2", "m3", "m4"]) {
    const { items } = await store.listAssignments(name);
    t.true(items.length * small.cpuMillis <= 4000);
  }
});

test("restarting the scheduler loses no sandbox", async (t) => {
  const etcd = await etcdFor(t);
  const first = await schedulerFor(t, etcd);
  await registerNode(t, etcd.client, "r1", { cpuMillis: 500, memoryMiB: 1024 });
  for (let i = 0; i < 10; i++) {
    const r = await api(first.url, "/v1/sandboxes", {
      method: "POST",
      body: JSON.stringify({ id: `r-${i}`, image, command: ["true"], resources: small }),
    });
    t.is(r.status, 201);
  }
  await eventually("5 placed", async () =>
    (await allSandboxes(etcd.client)).filter((s) => s.status.phase === "scheduled").length === 5
      ? true
      : undefined,
  );
  const before = await api<{ items: { id: string; status: { phase: string; node?: string } }[] }>(
    first.url,
    "/v1/sandboxes",
  );
  await first.close();
  const second = await schedulerFor(t, etcd);
  const after = await api<{ items: { id: string; status: { phase: string; node?: string } }[] }>(
    second.url,
    "/v1/sandboxes",
  );
  t.deepEqual(
    after.body.items.map((s) => [s.id, s.status.phase, s.status.node]).sort(),
    before.body.items.map((s) => [s.id, s.status.phase, s.status.node]).sort(),
  );
  t.is(after.body.items.length, 10);
  // The new scheduler picks up the pending ones once capacity appears.
  await registerNode(t, etcd.client, "r2", { cpuMillis: 500, memoryMiB: 1024 });
  await eventually("all 10 placed by the restarted scheduler", async () =>
    (await allSandboxes(etcd.client)).every((s) => s.status.phase === "scheduled")
      ? true
      : undefined,
  );
});
