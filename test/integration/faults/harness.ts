/**
 * The fault-injection suite's test bed and invariants (issue 13). Real etcd, real scheduler and
 * node agent processes on loopback, the `process` driver (bubblewrap). Every sandbox prints
 * `ran <id>` as its first act; the agents append that to its log file, and an evidence collector
 * hard-links every log file it sees, so a second run is visible even if an agent later removes a
 * directory. The invariants are checked against etcd's own history (watch from revision 1).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { link, mkdir, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { ExecutionContext } from "ava";
import type { SandboxRecord } from "../../../runtime/lib";
import { spawnNodeAgent, type SpawnedNodeAgent } from "../../../runtime/node-agent/spawn";
import { sandboxHistories } from "../../helpers/history";
import { buildBusyboxImage } from "../../helpers/images";
import {
  allSandboxes,
  PLATFORM_TOKEN,
  restartableEtcdFor,
  tempDirFor,
  type RestartableEtcd,
} from "../../helpers/runtime";

const SCHEDULER_MAIN = join(__dirname, "../../../runtime/scheduler/main.ts");

/** A scheduler replica as its own process. */
export interface SchedulerProcess {
  readonly url: string;
  readonly child: ChildProcess;
}

/** Start `tsx runtime/scheduler/main.ts` (election TTL 2 s), killed at teardown. */
export async function schedulerProcess(
  t: ExecutionContext,
  etcd: string,
): Promise<SchedulerProcess> {
  const child = spawn(
    process.execPath,
    ["--import=tsx", SCHEDULER_MAIN, "--etcd", etcd, "--port", "0", "--election-ttl", "2"],
    {
      stdio: ["ignore", "pipe", "ignore"],
      env: {
        ...process.env,
        SHARDWORKS_PLATFORM_TOKEN: PLATFORM_TOKEN,
        SHARDWORKS_LOG_LEVEL: "error",
      },
    },
  );
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
    }
  });
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).on("line", (line) => {
      if (line.includes('"ready":true')) resolve((JSON.parse(line) as { url: string }).url);
    });
    child.once("exit", (code) => reject(new Error(`scheduler exited ${code}`)));
  });
  return { url, child };
}

/** Whether a scheduler replica is the elected placer now (its /metrics says so). */
export async function leads(url: string): Promise<boolean> {
  try {
    const metrics = await (await fetch(`${url}/metrics`)).text();
    return /^shardworks_placer_leader 1$/m.test(metrics);
  } catch {
    return false;
  }
}

/** Everything a fault test runs against. */
export interface FaultBed {
  readonly dir: string;
  readonly image: string;
  readonly etcd: RestartableEtcd;
  readonly agents: Map<string, SpawnedNodeAgent>;
  /** Start (or restart, on the same data dir) the agent of node `name`. */
  startAgent(name: string): Promise<SpawnedNodeAgent>;
  /** Runs of each sandbox seen so far: `ran <id>` lines over every log file ever seen. */
  runs(): Promise<Map<string, number>>;
}

/** etcd in `dir`, a busybox image, agents `names` (process driver), and the evidence collector. */
export async function faultBed(
  t: ExecutionContext,
  prefix: string,
  names: readonly string[],
  leaseTtlSeconds = 10,
): Promise<FaultBed> {
  const dir = await tempDirFor(t, prefix);
  const image = buildBusyboxImage(join(dir, "image"));
  const etcd = await restartableEtcdFor(t, dir);
  const agents = new Map<string, SpawnedNodeAgent>();
  const startAgent = async (name: string): Promise<SpawnedNodeAgent> => {
    const agent = await spawnNodeAgent({
      name,
      etcdEndpoints: [etcd.endpoint],
      driver: "process",
      dataDir: join(dir, name),
      env: { TMPDIR: dir, SHARDWORKS_LOG_LEVEL: "error" },
      leaseTtlSeconds,
      cpuMillis: 2000,
      memoryMiB: 2048,
    });
    t.teardown(() => agent.stop(2000));
    agents.set(name, agent);
    return agent;
  };
  for (const name of names) await startAgent(name);
  const evidence = join(dir, "evidence");
  await mkdir(evidence);
  const seen = new Set<string>();
  // Hard links keep a log file's inode (and every later append to it) even after its directory
  // is removed: a second run on any node stays visible.
  const collect = async (): Promise<void> => {
    for (const node of names) {
      const root = join(dir, node, "sandboxes");
      for (const id of await readdir(root).catch(() => [] as string[])) {
        const file = join(root, id, "output.log");
        const info = await stat(file).catch(() => undefined);
        if (!info) continue;
        const name = `${node}--${id}--${info.ino}`;
        if (seen.has(name)) continue;
        seen.add(name);
        await link(file, join(evidence, name)).catch(() => seen.delete(name));
      }
    }
  };
  let collecting = true;
  const loop = (async () => {
    while (collecting) {
      await collect();
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  t.teardown(async () => {
    collecting = false;
    await loop;
  });
  return {
    dir,
    image,
    etcd,
    agents,
    startAgent,
    async runs() {
      await collect();
      const counts = new Map<string, number>();
      for (const file of await readdir(evidence)) {
        for (const match of (await readFile(join(evidence, file), "utf8")).matchAll(
          /^ran (\S+)$/gm,
        )) {
          counts.set(match[1]!, (counts.get(match[1]!) ?? 0) + 1);
        }
      }
      return counts;
    },
  };
}

/** How a burst went. */
export interface Burst {
  /** Ids the API acknowledged (201, or 409 on a retry: an earlier try was applied). */
  readonly acknowledged: Set<string>;
  /** Status codes seen other than 201/409 (e.g. 503 while etcd was away), with counts. */
  readonly others: Map<string, number>;
}

/**
 * Submit `count` sandboxes `<prefix>-<i>`, `parallel` at a time, round-robin over `urls()`. Each
 * create is retried with the same id (503, refused connection) until acknowledged, for at most
 * `deadlineMs`. `onAcknowledged(n)` after each acknowledgement (to inject a fault mid-burst).
 */
export async function burst(
  urls: () => readonly string[],
  image: string,
  options: {
    count: number;
    prefix: string;
    parallel?: number;
    deadlineMs?: number;
    /** Sandbox `i` sleeps `((7 i) mod 10) / 10 × sleepScale` s after printing; default 1. */
    sleepScale?: number;
    onAcknowledged?: (n: number) => void;
  },
): Promise<Burst> {
  const acknowledged = new Set<string>();
  const others = new Map<string, number>();
  const deadline = Date.now() + (options.deadlineMs ?? 90_000);
  let next = 0;
  let turn = 0;
  const one = async (i: number): Promise<void> => {
    const id = `${options.prefix}-${i}`;
    // Short commands of different lengths, so faults meet sandboxes in every phase.
    const body = JSON.stringify({
      id,
      image,
      command: [
        "sh",
        "-c",
        `echo "ran $SBID"; sleep ${((((i * 7) % 10) / 10) * (options.sleepScale ?? 1)).toFixed(1)}`,
      ],
      env: { SBID: id },
      resources: { cpuMillis: 100, memoryMiB: 64 },
    });
    while (Date.now() < deadline) {
      const list = urls();
      const url = list[turn++ % list.length]!;
      let status: string;
      try {
        const response = await fetch(`${url}/v1/sandboxes`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${PLATFORM_TOKEN}`,
            "content-type": "application/json",
          },
          body,
          signal: AbortSignal.timeout(10_000),
        });
        await response.arrayBuffer();
        status = String(response.status);
      } catch (error) {
        status = `fetch: ${(error as Error).name}`;
      }
      if (status === "201" || status === "409") {
        acknowledged.add(id);
        options.onAcknowledged?.(acknowledged.size);
        return;
      }
      others.set(status, (others.get(status) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  await Promise.all(
    Array.from({ length: options.parallel ?? 8 }, async () => {
      while (next < options.count) await one(next++);
    }),
  );
  return { acknowledged, others };
}

/** What {@link checkInvariants} allows beyond the strict case. */
export interface Allowances {
  /**
   * A node was lost: sandboxes whose run began there may end `failed` (never rerun), and ones
   * that never started there may be placed a second time (from `pending`, one assignment at once).
   */
  nodeLost?: boolean;
}

/**
 * Wait until every acknowledged sandbox is final, then check, from etcd's history and the run
 * evidence: none lost, none placed twice, none started twice, every one final, capacity zero.
 * Returns the final records.
 */
export async function checkInvariants(
  t: ExecutionContext,
  bed: FaultBed,
  apiUrl: string,
  acknowledged: ReadonlySet<string>,
  allow: Allowances = {},
): Promise<SandboxRecord[]> {
  const client = () => bed.etcd.current().client;
  const deadline = Date.now() + 60_000;
  let records: SandboxRecord[] = [];
  for (;;) {
    records = (await allSandboxes(client())).filter((r) => acknowledged.has(r.id));
    const open = records.filter((r) => r.status.phase !== "exited" && r.status.phase !== "failed");
    if (open.length === 0 && records.length === acknowledged.size) break;
    if (Date.now() > deadline) {
      t.fail(
        `not final after 60 s: ${open.map((r) => `${r.id}=${r.status.phase}@${r.status.node}`).join(", ")}`,
      );
      break;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const byId = new Map(records.map((r) => [r.id, r]));
  const histories = await sandboxHistories(client());
  const runs = await bed.runs();
  const problems: string[] = [];
  for (const id of acknowledged) {
    const record = byId.get(id);
    const h = histories.get(id);
    if (!record || !h) {
      problems.push(`${id}: acknowledged but lost`);
      continue;
    }
    if (h.creations !== 1) problems.push(`${id}: created ${h.creations} times`);
    if (h.maxLiveAssignments > 1)
      problems.push(`${id}: ${h.maxLiveAssignments} assignments at once`);
    if (h.phaseBeforeEachAssignment.some((p) => p !== "pending"))
      problems.push(`${id}: assigned from ${h.phaseBeforeEachAssignment.join(",")}, not pending`);
    if (!allow.nodeLost && h.assignments.length !== 1)
      problems.push(`${id}: placed ${h.assignments.length} times (${h.assignments.join(",")})`);
    const starts = h.phases.filter((p) => p === "starting").length;
    if (starts > 1)
      problems.push(`${id}: claimed (starting) ${starts} times: ${h.phases.join("→")}`);
    const ran = runs.get(id) ?? 0;
    if (ran > 1) problems.push(`${id}: ran ${ran} times`);
    if (record.status.phase === "exited") {
      if (ran !== 1) problems.push(`${id}: exited but ran ${ran} times`);
      if (record.status.exitCode !== 0) problems.push(`${id}: exit code ${record.status.exitCode}`);
    } else if (
      !allow.nodeLost ||
      !/was lost while the sandbox was/.test(record.status.reason ?? "")
    ) {
      problems.push(`${id}: ${record.status.phase}: ${record.status.reason ?? ""}`);
    }
  }
  t.deepEqual(problems, [], "every invariant holds for every acknowledged sandbox");
  // Capacity: nothing holds any, as the API reports it.
  const nodes = (await (
    await fetch(`${apiUrl}/v1/nodes`, { headers: { authorization: `Bearer ${PLATFORM_TOKEN}` } })
  ).json()) as { items: { name: string; allocated: { sandboxes: number; cpuMillis: number } }[] };
  t.deepEqual(
    nodes.items.filter((n) => n.allocated.sandboxes !== 0 || n.allocated.cpuMillis !== 0),
    [],
    "capacity is back to zero on every node",
  );
  return records;
}
