/**
 * The process driver's per-sandbox cgroups: never a reused name, leftovers of gone agents removed,
 * cgroup v2 delegation (moving the root's processes into a leaf), and no sandbox without its
 * memory cgroup and process cap unless told so.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  rmdirSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { sandboxSpecSchema } from "../../../contract/model";
import {
  createProcessDriver,
  type ProcessDriver,
} from "../../../runtime/node-agent/drivers/process";
import {
  agentLeaf,
  delegateUnifiedRoot,
  findCgroupRoot,
  planUnifiedRoot,
  readUnifiedCgroup,
  unlimitedOptOut,
  type UnifiedCgroupState,
} from "../../../runtime/node-agent/drivers/process/cgroup-hierarchy";
import { removeCgroup } from "../../../runtime/node-agent/drivers/process/sandbox-cgroups";
import { probeProcessDriver } from "../../../runtime/node-agent/drivers/process/probe";
import { buildBusyboxImage } from "../../helpers/images";

const root = mkdtempSync(join(tmpdir(), "sw-process-cgroups-"));
const image = buildBusyboxImage(join(root, "layout"));
const cacheDir = join(root, "cache");
test.after.always(() => rmSync(root, { recursive: true, force: true }));

const random = () => Math.random().toString(36).slice(2, 10);

/** This host's pids and memory hierarchies, or a loud failure without them. */
function hostRoots(t: ExecutionContext): { pids: string; memory: string } | undefined {
  const pids = findCgroupRoot("pids");
  const memory = findCgroupRoot("memory");
  if (pids.root === undefined || memory.root === undefined) {
    t.fail(`LOUD: no writable pids and memory cgroups here (${pids.reason} ${memory.reason})`);
    return undefined;
  }
  return { pids: pids.root, memory: memory.root };
}

async function run(driver: ProcessDriver, command: string[]) {
  const workDir = mkdtempSync(join(root, "run-"));
  const logFile = join(workDir, "log");
  const sandbox = await driver.run({
    id: "cg",
    spec: sandboxSpecSchema.parse({ image, command }),
    workDir,
    logFile,
  });
  return { sandbox, logFile };
}

/**
 * The host directories of the cgroups (under `<root>/shardworks/`) of the sandbox process whose
 * command line holds `marker`, read from /proc while it runs.
 */
async function cgroupsOf(
  marker: string,
  roots: { pids: string; memory: string },
): Promise<string[]> {
  for (let i = 0; i < 200; i += 1) {
    for (const pid of readdirSync("/proc").filter((entry) => /^[0-9]+$/.test(entry))) {
      let cmdline: string;
      let lines: string;
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
        if (!cmdline.includes(marker) || cmdline.includes("bwrap")) continue;
        lines = readFileSync(`/proc/${pid}/cgroup`, "utf8");
      } catch {
        continue;
      }
      const dirs = new Set<string>();
      for (const [controller, hierarchy] of Object.entries(roots)) {
        const v1 = new RegExp(`^[0-9]+:${controller}:(/shardworks/.+)$`, "m").exec(lines)?.[1];
        const v2 = /^0::(\/shardworks\/.+)$/m.exec(lines)?.[1];
        const path =
          v1 ?? (hierarchy === roots.pids && hierarchy === roots.memory ? v2 : undefined);
        if (path !== undefined) dirs.add(join(hierarchy, path));
      }
      if (dirs.size > 0) return [...dirs];
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return [];
}

/** A `sleep 60` the test owns, and a teardown that ends it. */
async function sleeper(t: ExecutionContext): Promise<ChildProcess & { pid: number }> {
  const child = spawn("sleep", ["60"], { stdio: "ignore" });
  await once(child, "spawn");
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await once(child, "exit");
    }
  });
  return child as ChildProcess & { pid: number };
}

test.serial(
  "cgroups: leftover cgroups with the names the old scheme picked do not break a run, and are not reused",
  async (t) => {
    const roots = hostRoots(t);
    if (!roots) return;
    // What an agent that crashed with this pid left (the old names were `<pid>-<n>`), with
    // limits no sandbox may inherit: memory + swap 16 MiB (v1: a 128 MiB memory limit cannot be
    // set above it, EINVAL), one process.
    const leftovers: string[] = [];
    for (let n = 1; n <= 20; n += 1) {
      for (const hierarchy of new Set([roots.pids, roots.memory])) {
        const dir = join(hierarchy, "shardworks", `${process.pid}-${n}`);
        mkdirSync(dir, { recursive: true });
        leftovers.push(dir);
        const set = (file: string, value: string) => {
          if (existsSync(join(dir, file))) writeFileSync(join(dir, file), value, { flag: "r+" });
        };
        set("pids.max", "1");
        set("memory.limit_in_bytes", String(16 << 20));
        set("memory.memsw.limit_in_bytes", String(16 << 20));
        set("memory.max", String(16 << 20));
      }
    }
    t.teardown(() => Promise.all(leftovers.map(removeCgroup)));
    const driver = createProcessDriver({ imageStore: { cacheDir } });
    t.teardown(() => driver.close());
    const marker = `leftover-${random()}`;
    const { sandbox, logFile } = await run(driver, ["sh", "-c", `: ${marker}; sleep 1; echo ok`]);
    const dirs = await cgroupsOf(marker, roots);
    t.deepEqual(await sandbox.exit, { kind: "exited", code: 0 }, readFileSync(logFile, "utf8"));
    t.regex(readFileSync(logFile, "utf8"), /^ok$/m);
    t.true(dirs.length > 0, "the sandbox ran in cgroups of its own");
    for (const dir of dirs) {
      t.false(leftovers.includes(dir), `${dir} is not a leftover`);
      t.regex(basename(dir), new RegExp(`^${process.pid}-[0-9a-f]{16}$`), "a random name");
    }
    const memoryLeftover = join(roots.memory, "shardworks", `${process.pid}-1`);
    const limitFile = existsSync(join(memoryLeftover, "memory.max"))
      ? "memory.max"
      : "memory.limit_in_bytes";
    t.is(
      readFileSync(join(memoryLeftover, limitFile), "utf8").trim(),
      String(16 << 20),
      "the leftover was not touched",
    );
  },
);

test.serial(
  "cgroups: a probe removes empty leftover cgroups, never ones in use or just created",
  async (t) => {
    const roots = hostRoots(t);
    if (!roots) return;
    const tag = random();
    const hierarchies = [...new Set([roots.pids, roots.memory])];
    const made: string[] = [];
    const make = (kind: string): string[] =>
      hierarchies.map((hierarchy) => {
        const dir = join(hierarchy, "shardworks", `leftover-${tag}-${kind}`);
        mkdirSync(dir, { recursive: true });
        made.push(dir);
        return dir;
      });
    t.teardown(() => Promise.all(made.map(removeCgroup)));
    const old = make("old");
    const young = make("young");
    const busy = make("busy");
    const holder = await sleeper(t);
    for (const dir of busy) writeFileSync(join(dir, "cgroup.procs"), String(holder.pid));
    // Left an hour ago.
    const hourAgo = new Date(Date.now() - 3_600_000);
    for (const dir of [...old, ...busy]) utimesSync(dir, hourAgo, hourAgo);
    const driver = createProcessDriver({ imageStore: { cacheDir } });
    t.teardown(() => driver.close());
    const probe = await driver.probe();
    t.true(probe.usable, probe.usable ? "" : probe.reason);
    t.deepEqual(old.filter(existsSync), [], "the empty leftovers are removed");
    t.deepEqual(young.filter(existsSync), young, "a just-created one stays (another agent's)");
    t.deepEqual(busy.filter(existsSync), busy, "one with a process in it stays");
    for (const dir of busy) {
      t.regex(readFileSync(join(dir, "cgroup.procs"), "utf8"), new RegExp(`^${holder.pid}$`, "m"));
    }
  },
);

test.serial(
  "cgroups: two drivers in one process give their sandboxes distinct cgroups",
  async (t) => {
    const roots = hostRoots(t);
    if (!roots) return;
    const drivers = [0, 1].map(() => createProcessDriver({ imageStore: { cacheDir } }));
    t.teardown(() => Promise.all(drivers.map((d) => d.close())));
    const markers = drivers.map(() => `two-${random()}`);
    // One after the other (the image is prepared once), running at the same time.
    const runs = [];
    for (const [i, d] of drivers.entries())
      runs.push(await run(d, ["sh", "-c", `: ${markers[i]}; sleep 2; echo done`]));
    const [first, second] = await Promise.all(markers.map((m) => cgroupsOf(m, roots)));
    await Promise.all(runs.map((r) => r.sandbox.exit));
    t.true((first?.length ?? 0) > 0 && (second?.length ?? 0) > 0, "both found");
    t.deepEqual(
      first?.filter((dir) => second?.includes(dir)),
      [],
      `no cgroup is shared: ${first?.join(", ")} / ${second?.join(", ")}`,
    );
  },
);

/** A cgroup v2 state from file contents (what `readUnifiedCgroup` reads). */
function v2(available: string, enabled: string, procs: number[], kernelRoot = false) {
  const words = (s: string) => s.split(" ").filter(Boolean);
  return { available: words(available), enabled: words(enabled), procs, kernelRoot };
}

test("cgroups: the cgroup v2 plan (pure): ready, enable, or move the root's processes first", (t) => {
  const wanted = ["memory", "pids"];
  const all = "cpuset cpu io memory hugetlb pids rdma misc";
  const cases: [string, UnifiedCgroupState, ReturnType<typeof planUnifiedRoot>][] = [
    [
      "a container's own cgroup namespace, the agent in its root (EKS AL2023 DaemonSet)",
      v2(all, "", [1, 7]),
      { kind: "delegate", move: [1, 7], enable: wanted, missing: [] },
    ],
    [
      "its processes moved out already",
      v2(all, "", []),
      { kind: "enable", enable: wanted, missing: [] },
    ],
    ["both enabled already", v2(all, "memory pids", [1]), { kind: "ready", missing: [] }],
    [
      "only pids enabled: memory still to enable, processes in the way",
      v2(all, "pids", [1]),
      { kind: "delegate", move: [1], enable: ["memory"], missing: [] },
    ],
    [
      "the kernel's root cgroup may hold processes and enable controllers (no move)",
      v2(all, "", [1, 2, 3], true),
      { kind: "enable", enable: wanted, missing: [] },
    ],
    [
      "the parent does not delegate pids: memory only, pids missing",
      v2("cpu memory", "", [1]),
      { kind: "delegate", move: [1], enable: ["memory"], missing: ["pids"] },
    ],
    [
      "nothing delegated: nothing to do, both missing",
      v2("cpu io", "", [1]),
      { kind: "ready", missing: wanted },
    ],
  ];
  for (const [name, state, plan] of cases) t.deepEqual(planUnifiedRoot(state, wanted), plan, name);
});

test("cgroups: the cgroup v2 state is read from the cgroup's files (a directory standing in)", (t) => {
  // Only the reading and the pure plan: the kernel's part is the next test, on a real hierarchy.
  const dir = mkdtempSync(join(root, "v2-files-"));
  writeFileSync(join(dir, "cgroup.controllers"), "cpuset cpu io memory pids\n");
  writeFileSync(join(dir, "cgroup.subtree_control"), "\n");
  writeFileSync(join(dir, "cgroup.procs"), "1\n42\n");
  writeFileSync(join(dir, "cgroup.type"), "domain\n");
  t.deepEqual(readUnifiedCgroup(dir), v2("cpuset cpu io memory pids", "", [1, 42]));
  t.deepEqual(planUnifiedRoot(readUnifiedCgroup(dir), ["memory", "pids"]), {
    kind: "delegate",
    move: [1, 42],
    enable: ["memory", "pids"],
    missing: [],
  });
  rmSync(join(dir, "cgroup.type"));
  t.true(readUnifiedCgroup(dir).kernelRoot, "no cgroup.type: the kernel's root cgroup");
});

/** The mount point of the cgroup v2 hierarchy, if there is one. */
function cgroup2Mount(): string | undefined {
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const [left, right] = line.split(" - ");
    if (right?.split(" ")[0] === "cgroup2") return left?.split(" ")[4];
  }
  return undefined;
}

test.serial(
  "cgroups: cgroup v2 delegation on a real hierarchy: the processes of a non-root cgroup move into a leaf, then its children get the controller",
  async (t) => {
    // A cgroup made here stands for a container's cgroup namespace root: not the kernel's root,
    // so the no-internal-process rule holds, as in the DaemonSet. The controller is one this
    // host's v2 hierarchy has (with hybrid cgroups memory and pids are v1's; the kernel's rule
    // is the same for every controller).
    const mount = cgroup2Mount();
    const available = mount ? readUnifiedCgroup(mount).available : [];
    const controller = ["memory", "pids"].find((c) => available.includes(c)) ?? available[0];
    if (mount === undefined || controller === undefined || process.getuid?.() !== 0) {
      t.log(
        "LOUD: no cgroup v2 hierarchy with a controller here (as root): delegation NOT verified",
      );
      t.pass();
      return;
    }
    const rootSubtree = join(mount, "cgroup.subtree_control");
    if (!readUnifiedCgroup(mount).enabled.includes(controller)) {
      writeFileSync(rootSubtree, `+${controller}`, { flag: "r+" });
      t.teardown(() => {
        try {
          writeFileSync(rootSubtree, `-${controller}`, { flag: "r+" });
        } catch {
          // another cgroup uses it now: leave it enabled
        }
      });
    }
    const dir = join(mount, `sw-delegation-${random()}`);
    mkdirSync(dir);
    // Teardowns run last first: the process ends, then its cgroups go, then the root's controller.
    t.teardown(async () => {
      for (const sub of [join(dir, "shardworks"), join(dir, agentLeaf)]) {
        if (existsSync(sub)) await removeCgroup(sub);
      }
      await removeCgroup(dir);
    });
    const child = await sleeper(t);
    writeFileSync(join(dir, "cgroup.procs"), String(child.pid), { flag: "r+" });
    // What the DaemonSet's agent ran into: processes in the cgroup, so no controller for children.
    t.throws(
      () => writeFileSync(join(dir, "cgroup.subtree_control"), `+${controller}`, { flag: "r+" }),
      { code: "EBUSY" },
    );
    const state = delegateUnifiedRoot(dir, [controller]);
    t.true(state.enabled.includes(controller), "enabled for the children");
    t.regex(readFileSync(join(dir, "cgroup.subtree_control"), "utf8"), new RegExp(controller));
    t.is(readFileSync(join(dir, "cgroup.procs"), "utf8").trim(), "", "no process left in the root");
    t.regex(
      readFileSync(join(dir, agentLeaf, "cgroup.procs"), "utf8"),
      new RegExp(`^${child.pid}$`, "m"),
      "the process is in the leaf",
    );
    t.regex(readFileSync(`/proc/${child.pid}/cgroup`, "utf8"), new RegExp(`/${agentLeaf}\\n`));
    // A sandbox's cgroup below it gets the controller's files.
    mkdirSync(join(dir, "shardworks"));
    t.true(
      readdirSync(join(dir, "shardworks")).some((file) => file.startsWith(`${controller}.`)),
      `the child has ${controller}.* files`,
    );
    t.deepEqual(delegateUnifiedRoot(dir, [controller]), readUnifiedCgroup(dir), "idempotent");
    rmdirSync(join(dir, "shardworks"));
  },
);

test("cgroups: without a memory or pids cgroup the driver is not usable unless SHARDWORKS_PROCESS_UNLIMITED=1", async (t) => {
  const host = {
    bwrap: "bwrap",
    busybox: "/bin/busybox",
    seccomp: false,
    python: "/usr/bin/python3",
    hostPorts: { min: 30_000, max: 30_001 },
  };
  const gaps = ["cgroup v2 /sys/fs/cgroup has no pids controller"];
  for (const missing of [
    { maxPids: undefined, memoryCgroup: false, says: /no memory cgroup .* and no pids cgroup/ },
    { maxPids: undefined, memoryCgroup: true, says: /no pids cgroup \(a process cap\)/ },
    { maxPids: 256, memoryCgroup: false, says: /no memory cgroup \(a memory limit/ },
  ]) {
    const closed = await probeProcessDriver({
      ...host,
      ...missing,
      cgroupGaps: gaps,
      unlimited: false,
    });
    t.false(closed.usable);
    const reason = closed.usable ? "" : closed.reason;
    t.regex(reason, missing.says);
    t.regex(reason, /has no pids controller/, "it says why");
    t.regex(reason, /SHARDWORKS_PROCESS_UNLIMITED=1/, "and the opt-out");
  }
  const open = await probeProcessDriver({
    ...host,
    maxPids: undefined,
    memoryCgroup: false,
    unlimited: true,
  });
  t.true(open.usable, open.usable ? "" : open.reason);
  const notes = open.usable ? open.capabilities.notes.join("\n") : "";
  t.regex(notes, /memory NOT limited per sandbox/);
  t.regex(notes, /process count NOT limited/);
  // The variable's values.
  t.false(unlimitedOptOut(undefined));
  t.false(unlimitedOptOut(""));
  t.false(unlimitedOptOut("0"));
  t.true(unlimitedOptOut("1"));
  t.throws(() => unlimitedOptOut("yes"), {
    message: /SHARDWORKS_PROCESS_UNLIMITED="yes" must be "1"/,
  });
  // No hierarchy at all under a base: the reason names both places looked at.
  const none = findCgroupRoot("memory", mkdtempSync(join(root, "no-cgroups-")));
  t.regex(none.reason ?? "", /no memory hierarchy: neither cgroup v1 .*\/memory nor cgroup v2/);
});

test.serial(
  "cgroups: the driver reads SHARDWORKS_PROCESS_UNLIMITED and refuses a bad value",
  (t) => {
    const before = process.env.SHARDWORKS_PROCESS_UNLIMITED;
    t.teardown(() => {
      if (before === undefined) delete process.env.SHARDWORKS_PROCESS_UNLIMITED;
      else process.env.SHARDWORKS_PROCESS_UNLIMITED = before;
    });
    process.env.SHARDWORKS_PROCESS_UNLIMITED = "true";
    t.throws(() => createProcessDriver({ imageStore: { cacheDir } }), {
      message: /SHARDWORKS_PROCESS_UNLIMITED="true" must be "1"/,
    });
  },
);
