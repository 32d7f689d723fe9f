import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import type { SandboxRecord } from "../../../runtime/lib";
import { spawnNodeAgent, type SpawnedNodeAgent } from "../../../runtime/node-agent/spawn";
import {
  allSandboxes,
  api,
  eventually,
  registerNode,
  schedulerWithImage,
} from "../../helpers/runtime";

async function agentFor(
  t: ExecutionContext,
  etcdEndpoint: string,
  name: string,
  dir: string,
  leaseTtlSeconds = 10,
  labels: Record<string, string> = {},
): Promise<SpawnedNodeAgent> {
  const agent = await spawnNodeAgent({
    name,
    etcdEndpoints: [etcdEndpoint],
    driver: "process",
    dataDir: join(dir, name),
    env: { TMPDIR: dir }, // even a kill -9 leaves nothing behind outside the test dir
    leaseTtlSeconds,
    labels,
    cpuMillis: 2000,
    memoryMiB: 2048,
  });
  t.teardown(() => agent.stop(2000));
  return agent;
}

test("submit → running → exit code and output are right; logs stream; delete stops it and cleans up", async (t) => {
  const { etcd, dir, image, scheduler } = await schedulerWithImage(t, "sw-sched-test-");
  await agentFor(t, etcd.endpoint, "node-a", dir);

  // Runs to completion: exit code 3 and the exact output.
  const done = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes?wait=exited&timeout=60", {
    method: "POST",
    body: JSON.stringify({
      id: "exits",
      image,
      command: ["sh", "-c", "echo out-$GREETING; echo err >&2; exit 3"],
      env: { GREETING: "hi" },
    }),
  });
  t.is(done.status, 201);
  t.is(done.body.status.phase, "exited");
  t.is(done.body.status.exitCode, 3);
  t.is(done.body.status.node, "node-a");
  t.true(["warm", "cold"].includes(done.body.status.start ?? ""));
  t.true((done.body.status.startMillis ?? -1) >= 0);
  const logs = await fetch(`${scheduler.url}/v1/sandboxes/exits/logs`, {
    headers: { authorization: "Bearer test-platform-token-0123456789" },
  });
  t.is(logs.status, 200);
  t.is((await logs.text()).split("\n").sort().join("\n"), ["", "err", "out-hi"].join("\n"));

  // A long runner: wait=running returns while it runs; follow streams lines as they come.
  const running = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes?wait=running&timeout=60", {
    method: "POST",
    body: JSON.stringify({
      id: "runner",
      image,
      command: ["sh", "-c", "echo started; sleep 1; echo one; exec sleep 600"],
    }),
  });
  t.is(running.body.status.phase, "running");
  const follow = await fetch(`${scheduler.url}/v1/sandboxes/runner/logs?follow=true`, {
    headers: { authorization: "Bearer test-platform-token-0123456789" },
  });
  const reader = follow.body!.getReader();
  let seen = "";
  while (!seen.includes("one\n")) {
    const { value, done: end } = await reader.read();
    if (end) break;
    seen += Buffer.from(value).toString();
  }
  t.is(seen, "started\none\n");

  // Delete: the sandbox is stopped, the stream ends, and its files are gone from the node.
  t.is((await api(scheduler.url, "/v1/sandboxes/runner", { method: "DELETE" })).status, 200);
  const rest = await Promise.race([
    reader.read(),
    new Promise((r) => setTimeout(() => r("still open"), 15_000)),
  ]);
  t.deepEqual(
    rest,
    { done: true, value: undefined },
    "follow stream ends when the sandbox is deleted",
  );
  t.is((await api(scheduler.url, "/v1/sandboxes/runner")).status, 404);
  await eventually("runner's files removed", async () =>
    (await readdir(join(dir, "node-a", "sandboxes"))).includes("runner") ? undefined : true,
  );
  t.false(existsSync(join(dir, "node-a", "sandboxes", "runner")));

  // A bad image (a layout that does not exist) fails with the reason, the service keeps working.
  const bad = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes?wait=exited&timeout=60", {
    method: "POST",
    body: JSON.stringify({
      id: "no-image",
      image: `oci:${join(dir, "missing")}:latest`,
      command: ["true"],
    }),
  });
  t.is(bad.body.status.phase, "failed");
  t.regex(bad.body.status.reason ?? "", /could not start: .*missing/);
});

test("kill -9 a node agent: within the lease TTL its running sandboxes are failed (never run twice), a never-started one is placed elsewhere", async (t) => {
  const ttl = 3;
  const { etcd, dir, image, scheduler } = await schedulerWithImage(t, "sw-sched-test-");
  const victim = await agentFor(t, etcd.endpoint, "victim", dir, ttl);
  // Only the victim exists at first, so everything lands there.
  for (let i = 0; i < 3; i++) {
    const r = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes?wait=running&timeout=60", {
      method: "POST",
      body: JSON.stringify({ id: `long-${i}`, image, command: ["sleep", "600"] }),
    });
    t.is(r.body.status.phase, "running");
    t.is(r.body.status.node, "victim");
  }
  // A node record nobody serves: what it is assigned stays `scheduled` (never started).
  const ghost = await registerNode(
    t,
    etcd.client,
    "ghost",
    { cpuMillis: 8000, memoryMiB: 8192 },
    { labels: { pool: "b" } },
  );
  const waiting = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes", {
    method: "POST",
    body: JSON.stringify({
      id: "never-started",
      image,
      command: ["sleep", "600"],
      nodeSelector: { pool: "b" },
    }),
  });
  t.is(waiting.status, 201);
  await eventually("never-started bound to ghost", async () =>
    (await allSandboxes(etcd.client)).find((s) => s.id === "never-started")?.status.node === "ghost"
      ? true
      : undefined,
  );
  await agentFor(t, etcd.endpoint, "survivor", dir, ttl, { pool: "b" });
  const killedAt = Date.now();
  victim.process.kill("SIGKILL");
  await ghost.revoke();
  const settled = await eventually(
    "the victim's three failed, never-started running on survivor",
    async () => {
      const all = await allSandboxes(etcd.client);
      const long = all.filter((s) => s.id.startsWith("long-"));
      const moved = all.find((s) => s.id === "never-started");
      return long.length === 3 &&
        long.every((s) => s.status.phase === "failed") &&
        moved?.status.node === "survivor" &&
        moved.status.phase === "running"
        ? long
        : undefined;
    },
    30_000,
  );
  const seconds = (Date.now() - killedAt) / 1000;
  t.log(`settled ${seconds.toFixed(1)} s after kill -9 (lease TTL ${ttl} s)`);
  // Lease expiry ≤ TTL (+ etcd's lease check granularity), then one placer pass and a start.
  t.true(seconds < ttl + 4, `took ${seconds} s`);
  for (const s of settled) {
    t.regex(
      s.status.reason ?? "",
      /node victim was lost while the sandbox was running; a run that began is never started again/,
    );
    t.is(s.status.node, "victim", "the record says where it was lost");
  }
  const nodes = await api<{ items: { name: string; allocated: { sandboxes: number } }[] }>(
    scheduler.url,
    "/v1/nodes",
  );
  t.deepEqual(
    nodes.body.items.map((n) => [n.name, n.allocated.sandboxes]),
    [["survivor", 1]],
    "the failed ones hold no capacity; only never-started runs",
  );
});
