/**
 * Issue 13, defect 1: an exit status lost during an etcd outage was never retried (the report gave
 * up after ~20 tries and reconcile skipped the sandbox), so it stayed `running`, kept its node's
 * capacity, and ran a second time once its agent restarted. Reports are level-triggered now, and
 * a run that began is never started again.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import type { SandboxRecord } from "../../../runtime/lib";
import { spawnNodeAgent, type SpawnedNodeAgent } from "../../../runtime/node-agent/spawn";
import { buildBusyboxImage } from "../../helpers/images";
import { sandboxHistories } from "../../helpers/history";
import {
  api,
  eventually,
  restartableEtcdFor,
  schedulerFor,
  tempDirFor,
} from "../../helpers/runtime";

async function agentFor(
  t: ExecutionContext,
  etcd: string,
  name: string,
  dir: string,
): Promise<SpawnedNodeAgent> {
  const agent = await spawnNodeAgent({
    name,
    etcdEndpoints: [etcd],
    driver: "process",
    dataDir: join(dir, name),
    env: { TMPDIR: dir },
    leaseTtlSeconds: 30,
    cpuMillis: 2000,
    memoryMiB: 2048,
  });
  t.teardown(() => agent.stop(2000));
  return agent;
}

const runs = async (dir: string, node: string, id: string): Promise<number> =>
  (
    (await readFile(join(dir, node, "sandboxes", id, "output.log"), "utf8").catch(() => "")).match(
      /^ran$/gm,
    ) ?? []
  ).length;

async function allocated(url: string): Promise<number> {
  const nodes = await api<{ items: { allocated: { sandboxes: number } }[] }>(url, "/v1/nodes");
  return nodes.body.items.reduce((n, i) => n + i.allocated.sandboxes, 0);
}

test("an exit during an 8 s etcd outage is written once etcd is back; capacity returns; an agent restart does not run it again", async (t) => {
  const dir = await tempDirFor(t, "sw-outage-");
  const image = buildBusyboxImage(join(dir, "image"));
  const etcd = await restartableEtcdFor(t, dir);
  const scheduler = await schedulerFor(t, etcd.current());
  let agent = await agentFor(t, etcd.endpoint, "node-a", dir);
  const created = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes?wait=running&timeout=60", {
    method: "POST",
    body: JSON.stringify({ id: "outlives", image, command: ["sh", "-c", "echo ran; sleep 1"] }),
  });
  t.is(created.body.status.phase, "running");
  await etcd.kill();
  // The command ends during the outage; the old agent gave up reporting it after ~4 s.
  await new Promise((r) => setTimeout(r, 8000));
  await etcd.restart();
  const done = await eventually(
    "the exit written after the outage",
    async () => {
      const r = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes/outlives");
      return r.body.status?.phase === "exited" ? r.body : undefined;
    },
    40_000,
  );
  t.is(done.status.exitCode, 0);
  t.is(await allocated(scheduler.url), 0, "its capacity is free again");

  await agent.stop();
  agent = await agentFor(t, etcd.endpoint, "node-a", dir);
  await new Promise((r) => setTimeout(r, 3000)); // a few reconcile passes of the new agent
  t.is(await runs(dir, "node-a", "outlives"), 1, "the command ran exactly once");
  const history = (await sandboxHistories(etcd.current().client)).get("outlives")!;
  t.deepEqual(history.phases, ["pending", "scheduled", "starting", "running", "exited"]);
});

test("agent killed -9 while etcd is away after an exit: the restarted agent reports that exit and does not run it again", async (t) => {
  const dir = await tempDirFor(t, "sw-outage-");
  const image = buildBusyboxImage(join(dir, "image"));
  const etcd = await restartableEtcdFor(t, dir);
  const scheduler = await schedulerFor(t, etcd.current());
  const agent = await agentFor(t, etcd.endpoint, "node-a", dir);
  const created = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes?wait=running&timeout=60", {
    method: "POST",
    body: JSON.stringify({ id: "journaled", image, command: ["sh", "-c", "echo ran; exit 7"] }),
  });
  t.true(["running", "exited"].includes(created.body.status.phase));
  if (created.body.status.phase === "running") {
    // Not yet reported: cut etcd off so the exit can only be kept on the node.
    await etcd.kill();
  }
  await new Promise((r) => setTimeout(r, 1500));
  agent.process.kill("SIGKILL");
  await new Promise((r) => agent.process.once("exit", r));
  if (etcd.current().process.exitCode !== null || etcd.current().process.signalCode !== null)
    await etcd.restart();
  await agentFor(t, etcd.endpoint, "node-a", dir);
  const done = await eventually(
    "the exit reported by the restarted agent",
    async () => {
      const r = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes/journaled");
      return r.body.status && ["exited", "failed"].includes(r.body.status.phase)
        ? r.body
        : undefined;
    },
    40_000,
  );
  t.is(done.status.phase, "exited", done.status.reason);
  t.is(done.status.exitCode, 7);
  await new Promise((r) => setTimeout(r, 2000));
  t.is(await runs(dir, "node-a", "journaled"), 1, "the command ran exactly once");
  t.is(await allocated(scheduler.url), 0);
});

test("agent killed -9 while its sandbox runs, restarted on the same data dir: the run is failed as interrupted, not started again", async (t) => {
  const dir = await tempDirFor(t, "sw-outage-");
  const image = buildBusyboxImage(join(dir, "image"));
  const etcd = await restartableEtcdFor(t, dir);
  const scheduler = await schedulerFor(t, etcd.current());
  const agent = await agentFor(t, etcd.endpoint, "node-a", dir);
  const created = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes?wait=running&timeout=60", {
    method: "POST",
    body: JSON.stringify({ id: "cut-short", image, command: ["sh", "-c", "echo ran; sleep 600"] }),
  });
  t.is(created.body.status.phase, "running");
  await eventually("its output in the log", async () =>
    (await runs(dir, "node-a", "cut-short")) === 1 ? true : undefined,
  );
  agent.process.kill("SIGKILL");
  await new Promise((r) => agent.process.once("exit", r));
  // Back within the lease TTL (30 s): the node never vanished, the assignment is still here.
  await agentFor(t, etcd.endpoint, "node-a", dir);
  const done = await eventually(
    "the interrupted run failed",
    async () => {
      const r = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes/cut-short");
      return r.body.status?.phase === "failed" ? r.body : undefined;
    },
    30_000,
  );
  t.regex(done.status.reason ?? "", /interrupted: .*restarted/);
  await new Promise((r) => setTimeout(r, 2000));
  t.is(await runs(dir, "node-a", "cut-short"), 1, "never started a second time");
  t.is(await allocated(scheduler.url), 0);
});
