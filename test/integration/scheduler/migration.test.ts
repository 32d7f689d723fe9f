/**
 * Live migration through the scheduler API, between two real node agent processes running the
 * qemu driver (real QEMU microVMs; TCG here, since KVM hangs on this host — said loudly below).
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import type { SandboxRecord } from "../../../runtime/lib";
import { createDriver } from "../../../runtime/node-agent/drivers";
import { spawnNodeAgent } from "../../../runtime/node-agent/spawn";
import type { RunningScheduler } from "../../../runtime/scheduler";
import { PLATFORM_TOKEN, api, eventually, schedulerWithImage } from "../../helpers/runtime";

const COUNTER = ["sh", "-c", 'i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.2; done'];

async function logTicks(base: string, id: string): Promise<number[]> {
  const response = await fetch(`${base}/v1/sandboxes/${id}/logs`, {
    headers: { authorization: `Bearer ${PLATFORM_TOKEN}` },
  });
  if (!response.ok) throw new Error(`logs: ${response.status} ${await response.text()}`);
  return [...(await response.text()).matchAll(/tick (\d+)/g)].map((m) => Number(m[1]));
}

/** A scheduler, two qemu node agents (`role: source` / `role: target`), a counter on the source. */
interface MigrationBed {
  scheduler: RunningScheduler;
  /** pid of each node agent process, by role. */
  pids: Record<"source" | "target", number | undefined>;
}

/**
 * Real etcd, a scheduler, two qemu node agents `nodes` (labelled `role: source` / `target`) and
 * the sandbox `id` running {@link COUNTER} on the source; everything is stopped at teardown.
 * When QEMU cannot run here it says LOUDLY that `what` is unverified, fails the test and
 * returns undefined.
 */
async function counterOnSource(
  t: ExecutionContext,
  what: string,
  nodes: { source: string; target: string },
  id: string,
): Promise<MigrationBed | undefined> {
  const prober = createDriver("qemu");
  const probe = await prober.probe();
  await prober.close();
  if (!probe.usable) {
    console.error(
      `\n${"!".repeat(78)}\n!! qemu is NOT usable here (${probe.reason}):\n!! ${what} is UNVERIFIED on this host.\n${"!".repeat(78)}\n`,
    );
    t.fail(`qemu unusable: ${what} UNVERIFIED: ${probe.reason}`);
    return undefined;
  }
  const tcg = probe.capabilities.notes.find((n) => /TCG/.test(n));
  if (tcg) {
    console.error(
      `\n${"!".repeat(78)}\n!! ${what} runs QEMU under TCG, NOT KVM: ${tcg}\n${"!".repeat(78)}\n`,
    );
    t.log(`UNDER TCG: ${tcg}`);
  }
  const { etcd, dir, image, scheduler } = await schedulerWithImage(t, "sw-migrate-");
  const pids: MigrationBed["pids"] = { source: undefined, target: undefined };
  const spawnAgent = async (role: "source" | "target") => {
    const agent = await spawnNodeAgent({
      name: nodes[role],
      etcdEndpoints: [etcd.endpoint],
      driver: "qemu",
      dataDir: join(dir, nodes[role]),
      env: { TMPDIR: dir },
      labels: { role },
      readyTimeoutMs: 120_000,
    });
    t.teardown(() => agent.stop(5000));
    pids[role] = agent.process.pid;
  };
  // The source alone first, so the sandbox is placed there; no nodeSelector pins it (one would
  // keep it from moving: a target must fit the sandbox as placement requires).
  await spawnAgent("source");
  const created = await api<SandboxRecord>(
    scheduler.url,
    "/v1/sandboxes?wait=running&timeout=150",
    {
      method: "POST",
      body: JSON.stringify({ id, image, command: COUNTER, driver: "qemu" }),
    },
  );
  t.is(created.body.status.phase, "running", JSON.stringify(created.body.status));
  t.is(created.body.status.node, nodes.source);
  await spawnAgent("target");
  return { scheduler, pids };
}

test.serial(
  "migrate a running qemu sandbox to another node through the API: its counter keeps counting there",
  async (t) => {
    const bed = await counterOnSource(
      t,
      "live migration through the API",
      { source: "mig-src", target: "mig-dst" },
      "counter",
    );
    if (bed === undefined) return;
    const { scheduler } = bed;
    // The ticks in the counter's log, once there are at least 5.
    const fiveTicks = (where: string) =>
      eventually(
        `5 ticks on the ${where}`,
        async () => {
          const ticks = await logTicks(scheduler.url, "counter");
          return ticks.length >= 5 ? ticks : undefined;
        },
        60_000,
      );
    const before = await fiveTicks("source");

    const started = Date.now();
    const moved = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes/counter/migrate", {
      method: "POST",
      body: JSON.stringify({ node: "mig-dst" }),
    });
    t.is(moved.status, 200, JSON.stringify(moved.body));
    t.log(`migration through the API took ${Date.now() - started} ms`);
    t.is(moved.body.status.node, "mig-dst");
    t.is(moved.body.status.phase, "running");
    const lastOnSource = before.at(-1)!;
    const after = await fiveTicks("target");
    t.log(`source …${before.slice(-3).join(",")}; target ${after.slice(0, 3).join(",")}…`);
    t.true(after[0]! > lastOnSource, "the target continued the counter instead of restarting it");
    for (let i = 1; i < after.length; i++) t.true(after[i]! > after[i - 1]!);
    // The source no longer runs it (it stays running on the target, not reported failed).
    await new Promise((r) => setTimeout(r, 1000));
    const now = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes/counter");
    t.is(now.body.status.phase, "running");
    t.is(now.body.status.node, "mig-dst");
    t.is((await api(scheduler.url, "/v1/sandboxes/counter", { method: "DELETE" })).status, 200);
  },
);

/** pids of the QEMU processes a node agent process started (its children). */
function qemuChildren(agentPid: number | undefined): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^[0-9]+$/.test(entry))
    .filter((pid) => {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
        const ppid = /^PPid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
        return cmdline.startsWith("qemu-system") && Number(ppid) === agentPid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

test.serial(
  "delete during a live migration leaves no QEMU on either node and the sandbox gone",
  async (t) => {
    t.timeout(600_000);
    const bed = await counterOnSource(
      t,
      "delete during a live migration",
      { source: "del-src", target: "del-dst" },
      "doomed",
    );
    if (bed === undefined) return;
    const { scheduler, pids } = bed;
    t.log("running on the source");
    await eventually(
      "ticks on the source",
      async () => ((await logTicks(scheduler.url, "doomed")).length >= 3 ? true : undefined),
      60_000,
    );
    // The source runs the sandbox's VM, plus a paused one in its warm pool once refilled.
    const sourceBefore = await eventually(
      "the source's warm pool refilled",
      () => {
        const found = qemuChildren(pids.source);
        return Promise.resolve(found.length >= 2 ? found : undefined);
      },
      120_000,
    );
    t.log(`source QEMUs before: ${sourceBefore.length}`);

    const migrating = api(scheduler.url, "/v1/sandboxes/doomed/migrate", {
      method: "POST",
      body: JSON.stringify({ node: "del-dst" }),
    });
    await eventually(
      "the sandbox is migrating",
      async () =>
        (await api<SandboxRecord>(scheduler.url, "/v1/sandboxes/doomed")).body.status.phase ===
        "migrating"
          ? true
          : undefined,
      30_000,
    );
    t.log("migrating; deleting it now");
    const deleted = await api(scheduler.url, "/v1/sandboxes/doomed", { method: "DELETE" });
    t.is(deleted.status, 200, JSON.stringify(deleted.body));
    const migrated = await migrating;
    t.log(`migrate answered ${migrated.status} after the delete`);
    t.not(migrated.status, 500, JSON.stringify(migrated.body));
    // The target keeps no VM; the source keeps only its warm-pool VM(s) (the sandbox's is gone).
    const settled = () => {
      const target = qemuChildren(pids.target);
      const source = qemuChildren(pids.source);
      return target.length === 0 && source.length === sourceBefore.length - 1 ? true : undefined;
    };
    await eventually(
      "no QEMU of the deleted sandbox left on either node",
      () => Promise.resolve(settled()),
      60_000,
    ).catch(() => undefined);
    t.deepEqual(qemuChildren(pids.target), [], "no QEMU is left on the target");
    t.is(
      qemuChildren(pids.source).length,
      sourceBefore.length - 1,
      "the source stopped the sandbox's QEMU",
    );
    t.true(
      qemuChildren(pids.source).every((pid) => sourceBefore.includes(pid)),
      "no new QEMU on the source (the sandbox was not restarted)",
    );
    await new Promise((r) => setTimeout(r, 3000));
    t.deepEqual(qemuChildren(pids.target), [], "and none comes back on the target");
    t.is(qemuChildren(pids.source).length, sourceBefore.length - 1, "nor on the source");
    t.is(
      (await api(scheduler.url, "/v1/sandboxes/doomed")).status,
      404,
      "the sandbox stays deleted",
    );
  },
);
