/**
 * The resource limits of a process sandbox that the host enforces outside bwrap: a pids cgroup
 * (the process cap), a memory cgroup (the memory limit of all its processes and tmpfs files
 * together) and a /proc/meminfo that shows the memory limit.
 *
 * Each sandbox gets `<root>/shardworks/<name>` in the hierarchy of each controller: with cgroup v1
 * one directory per controller, with v2 one directory (both roots are `/sys/fs/cgroup`) holding
 * both limits. `<name>` is random and always a new directory: a leftover cgroup (an agent that
 * crashed) is never reused, and two agents sharing a hierarchy never share a cgroup.
 */
import { randomBytes } from "node:crypto";
import {
  accessSync,
  constants as fsConstants,
  existsSync,
  mkdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { mkdir, readdir, rmdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { logger } from "../../../lib/logger";

const log = logger.child({ component: "process-driver" });

/** A /proc/meminfo whose totals are the sandbox's memory limit (what `free` and runtimes read). */
export function meminfoFor(memoryMiB: number): string {
  const kb = memoryMiB * 1024;
  const line = (name: string, value: number): string =>
    `${`${name}:`.padEnd(16)}${String(value).padStart(8)} kB`;
  return `${[
    line("MemTotal", kb),
    line("MemFree", kb),
    line("MemAvailable", kb),
    line("Buffers", 0),
    line("Cached", 0),
    line("SwapCached", 0),
    line("SwapTotal", 0),
    line("SwapFree", 0),
  ].join("\n")}\n`;
}

/** The cgroup controllers the driver puts each sandbox under. */
export type CgroupController = "pids" | "memory";

/** Both of them: cgroup v2 delegation enables them together. */
const sandboxControllers: readonly CgroupController[] = ["memory", "pids"];

/** Where the host's cgroup hierarchies are mounted. */
const cgroupMount = "/sys/fs/cgroup";

/**
 * The cgroup v2 leaf the processes of the root cgroup are moved to when they keep it from
 * enabling controllers for its children (see {@link planUnifiedRoot}).
 */
export const agentLeaf = "agent";

/** The hierarchy sandboxes' cgroups of one controller go in, or why there is none. */
export type CgroupRootLookup =
  | { readonly root: string; readonly reason?: undefined }
  | { readonly root?: undefined; readonly reason: string };

/**
 * The hierarchy of `controller` under `base`: cgroup v1 `<base>/<controller>`, or cgroup v2
 * `<base>` once the controller is enabled for its children (delegating it first if need be, see
 * {@link delegateUnifiedRoot}); the reason when there is none we may write.
 */
export function findCgroupRoot(
  controller: CgroupController,
  base: string = cgroupMount,
): CgroupRootLookup {
  const v1 = join(base, controller);
  if (existsSync(join(v1, "tasks"))) {
    return writable(join(v1, "cgroup.procs"))
      ? { root: v1 }
      : {
          reason: `cgroup v1 ${v1} is not writable (the node agent is not root, or it is mounted read-only)`,
        };
  }
  if (!existsSync(join(base, "cgroup.controllers"))) {
    return { reason: `no ${controller} hierarchy: neither cgroup v1 ${v1} nor cgroup v2 ${base}` };
  }
  if (!writable(join(base, "cgroup.procs"))) {
    return {
      reason: `cgroup v2 ${base} is not writable (the node agent is not root, or it is mounted read-only)`,
    };
  }
  let state: UnifiedCgroupState;
  try {
    state = delegateUnifiedRoot(base, sandboxControllers);
  } catch (error) {
    return {
      reason: `cannot enable the ${controller} controller for sandboxes in cgroup v2 ${base} (${(error as Error).message})`,
    };
  }
  if (!state.enabled.includes(controller)) {
    return {
      reason: `cgroup v2 ${base} has no ${controller} controller (cgroup.controllers: "${state.available.join(" ")}"): its parent cgroup does not delegate it`,
    };
  }
  return { root: base };
}

/** The pids and memory hierarchies of a driver (given ones as they are), and why any is missing. */
export interface SandboxCgroupRoots {
  readonly pids: string | undefined;
  readonly memory: string | undefined;
  /** Why `pids` or `memory` is undefined, one reason each. */
  readonly gaps: readonly string[];
}

/** The driver's hierarchies: `given` ones, else those {@link findCgroupRoot} finds. */
export function sandboxCgroupRoots(given: {
  readonly pids?: string | undefined;
  readonly memory?: string | undefined;
}): SandboxCgroupRoots {
  const pids = given.pids !== undefined ? { root: given.pids } : findCgroupRoot("pids");
  const memory = given.memory !== undefined ? { root: given.memory } : findCgroupRoot("memory");
  return {
    pids: pids.root,
    memory: memory.root,
    gaps: [pids.reason, memory.reason].filter((reason) => reason !== undefined),
  };
}

/**
 * `SHARDWORKS_PROCESS_UNLIMITED=1`: let the driver run sandboxes without a memory cgroup or
 * without a pids cgroup where it finds none (development hosts without cgroup access only);
 * unset, "" or "0": it is not usable then.
 */
export function unlimitedOptOut(value = process.env.SHARDWORKS_PROCESS_UNLIMITED): boolean {
  if (value === undefined || value === "" || value === "0") return false;
  if (value === "1") return true;
  throw new Error(
    `SHARDWORKS_PROCESS_UNLIMITED="${value}" must be "1" (run sandboxes without memory or pids cgroups where there are none: development hosts only) or unset`,
  );
}

/** What a cgroup v2 directory says about itself (its files' contents). */
export interface UnifiedCgroupState {
  /** `cgroup.controllers`: what its parent lets it give its children. */
  readonly available: readonly string[];
  /** `cgroup.subtree_control`: what its children get. */
  readonly enabled: readonly string[];
  /** `cgroup.procs`: the processes in it (not in its children). */
  readonly procs: readonly number[];
  /**
   * The kernel's root cgroup (it has no `cgroup.type`), exempt from the no-internal-process rule.
   * The root of a cgroup namespace (a container's `/sys/fs/cgroup`) is not.
   */
  readonly kernelRoot: boolean;
}

/** Reads the {@link UnifiedCgroupState} of cgroup v2 directory `dir`. */
export function readUnifiedCgroup(dir: string): UnifiedCgroupState {
  const words = (file: string) =>
    readFileSync(join(dir, file), "utf8")
      .split(/\s+/)
      .filter((word) => word !== "");
  return {
    available: words("cgroup.controllers"),
    enabled: words("cgroup.subtree_control"),
    procs: words("cgroup.procs").map(Number),
    kernelRoot: !existsSync(join(dir, "cgroup.type")),
  };
}

/** What to do to a cgroup v2 directory so its children get `wanted` controllers. */
export type UnifiedRootPlan =
  /** Every wanted controller it has is enabled for its children already. */
  | { readonly kind: "ready"; readonly missing: readonly string[] }
  /** Write `+<controller>` for each of `enable` to its `cgroup.subtree_control`. */
  | {
      readonly kind: "enable";
      readonly enable: readonly string[];
      readonly missing: readonly string[];
    }
  /**
   * First move `move` (its processes) into the leaf {@link agentLeaf}: a non-root cgroup with
   * processes of its own cannot enable controllers for its children (EBUSY).
   */
  | {
      readonly kind: "delegate";
      readonly move: readonly number[];
      readonly enable: readonly string[];
      readonly missing: readonly string[];
    };

/**
 * The plan for `state`: nothing, enable the wanted controllers it has (`missing`: those it has
 * not, its parent does not delegate them), or first move its processes out of the way. Pure.
 */
export function planUnifiedRoot(
  state: UnifiedCgroupState,
  wanted: readonly string[],
): UnifiedRootPlan {
  const missing = wanted.filter((c) => !state.available.includes(c));
  const enable = wanted.filter((c) => state.available.includes(c) && !state.enabled.includes(c));
  if (enable.length === 0) return { kind: "ready", missing };
  if (state.procs.length === 0 || state.kernelRoot) return { kind: "enable", enable, missing };
  return { kind: "delegate", move: state.procs, enable, missing };
}

/**
 * Makes cgroup v2 directory `dir` enable the `wanted` controllers it has for its children, the
 * standard delegation pattern: a container with its own cgroup namespace (the node agent's
 * DaemonSet) sees its own cgroup as `/sys/fs/cgroup`, holding its processes, so its processes are
 * moved into the leaf `<dir>/agent` first. Returns the state it leaves; throws if it cannot.
 */
export function delegateUnifiedRoot(
  dir: string,
  wanted: readonly string[],
  leaf: string = agentLeaf,
): UnifiedCgroupState {
  let lastError: Error | undefined;
  // A process that forks meanwhile puts its child in `dir` again: re-read and retry, a few times.
  for (let round = 0; round < 10; round += 1) {
    const state = readUnifiedCgroup(dir);
    const plan = planUnifiedRoot(state, wanted);
    if (plan.kind === "ready") return state;
    if (plan.kind === "delegate") {
      const target = join(dir, leaf);
      mkdirSync(target, { recursive: true });
      for (const pid of plan.move) {
        try {
          writeFileSync(join(target, "cgroup.procs"), String(pid), { flag: "r+" });
        } catch (error) {
          // Exited meanwhile; anything else is a real failure.
          if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
        }
      }
      log.info(
        { cgroup: dir, leaf: target, moved: plan.move },
        "moved the processes of the cgroup v2 root into a leaf, so sandboxes can have their own memory and pids cgroups",
      );
      continue;
    }
    try {
      const line = plan.enable.map((c) => `+${c}`).join(" ");
      writeFileSync(join(dir, "cgroup.subtree_control"), line, { flag: "r+" });
    } catch (error) {
      // EBUSY: a process appeared in `dir` meanwhile; the next round moves it.
      if ((error as NodeJS.ErrnoException).code !== "EBUSY") throw error;
      lastError = error as Error;
    }
  }
  throw new Error(
    `${dir}/cgroup.subtree_control stays busy (${lastError?.message ?? "processes keep appearing in it"})`,
  );
}

/** Where one sandbox's cgroups go and their limits (any may be absent: no such hierarchy). */
export interface SandboxCgroupLimits {
  /** The pids hierarchy and the most processes and threads the sandbox may have. */
  readonly pids?: { readonly root: string; readonly maxPids: number } | undefined;
  /** The memory hierarchy and the sandbox's memory limit. */
  readonly memory?: { readonly root: string; readonly memoryMiB: number } | undefined;
}

/**
 * Creates the cgroups of one sandbox, limits set, and returns their directories (one per
 * hierarchy: two with cgroup v1, one with v2). The name is `<prefix>-<random>` and each leaf a new
 * directory (never an existing one, which could be another agent's or carry a leftover's limits):
 * on EEXIST it takes another name. On failure nothing is left behind and the error names the
 * root, the cause and the fix.
 *
 * pids: at most `maxPids` processes and threads. memory: `memoryMiB` for all its processes
 * together, including the tmpfs pages they write (/tmp, /work, /dev/shm) and kernel memory, and
 * swap cannot extend it; past the limit the kernel reclaims, then OOM-kills inside the sandbox,
 * never elsewhere.
 */
export async function createSandboxCgroups(
  limits: SandboxCgroupLimits,
  prefix: string = String(process.pid),
): Promise<string[]> {
  const byRoot = new Map<string, CgroupController[]>();
  if (limits.pids) byRoot.set(limits.pids.root, ["pids"]);
  if (limits.memory) {
    const root = limits.memory.root;
    byRoot.set(root, [...(byRoot.get(root) ?? []), "memory"]);
  }
  for (let attempt = 0; attempt < 5; attempt += 1) {
    const name = `${prefix}-${randomBytes(8).toString("hex")}`;
    const created: string[] = [];
    try {
      for (const [root, controllers] of byRoot) {
        const dir = await createLeaf(root, controllers, name);
        if (dir === undefined) break;
        created.push(dir);
        if (limits.pids && controllers.includes("pids")) {
          const max = String(limits.pids.maxPids);
          await writeControl(dir, "pids.max", max).catch(failed(["pids"], root));
        }
        if (limits.memory && controllers.includes("memory")) {
          const mib = limits.memory.memoryMiB;
          await setMemoryLimit(root, dir, mib).catch(failed(["memory"], root));
        }
      }
    } catch (error) {
      await Promise.all(created.map((dir) => rmdir(dir).catch(() => undefined)));
      throw error;
    }
    if (created.length === byRoot.size) return created;
    // A leaf of that name exists already (a leftover, or another agent's): take another name.
    log.warn({ name }, "a sandbox cgroup of that name exists already: picking another name");
    await Promise.all(created.map((dir) => rmdir(dir).catch(() => undefined)));
  }
  throw new Error(
    "process driver: could not pick a sandbox cgroup name that is not taken (5 random names all existed)",
  );
}

/**
 * Creates and removes a throwaway cgroup of `controller` under `root`, limit set, as a sandbox's
 * would be: throws (naming the root, the error and the fix) when sandboxes could not get one.
 */
export async function checkCgroupRoot(root: string, controller: CgroupController): Promise<void> {
  const limits =
    controller === "pids" ? { pids: { root, maxPids: 1 } } : { memory: { root, memoryMiB: 1 } };
  const dirs = await createSandboxCgroups(limits, `probe-${process.pid}`);
  await Promise.all(dirs.map(removeCgroup));
}

/** Removes a sandbox's cgroup once the kernel has emptied it; logs if it stays busy. */
export async function removeCgroup(dir: string): Promise<void> {
  // Emptied asynchronously by the kernel after the last process is reaped: retry for up to 5 s
  // (what stays is removed by the next driver's probe, see removeLeftoverCgroups).
  const deadline = Date.now() + 5000;
  for (let wait = 10; ; wait = Math.min(wait * 2, 250)) {
    try {
      await rmdir(dir);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      if (Date.now() >= deadline) break;
      await delay(wait);
    }
  }
  log.warn({ cgroup: dir }, "could not remove a sandbox's cgroup");
}

/**
 * Removes the empty cgroups in `<root>/shardworks` left by agents that are gone (one that crashed,
 * or a cgroup the kernel emptied too late), and returns them. Only empty ones go: rmdir fails
 * (EBUSY) on a cgroup with a process or a child cgroup in it, so a live sandbox's stays. Only
 * ones not changed for `olderThanMs`: another live agent sharing the hierarchy may have just
 * created one its sandbox is about to join.
 */
export async function removeLeftoverCgroups(root: string, olderThanMs = 60_000): Promise<string[]> {
  const parent = join(root, "shardworks");
  let entries: string[];
  try {
    entries = (await readdir(parent, { withFileTypes: true }))
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name);
  } catch {
    return []; // no such directory yet (or not readable: creating sandboxes' fails loudly)
  }
  const removed: string[] = [];
  for (const name of entries) {
    const dir = join(parent, name);
    try {
      if (Date.now() - (await stat(dir)).mtimeMs < olderThanMs) continue;
      await rmdir(dir);
      removed.push(dir);
    } catch {
      // in use (EBUSY), or gone meanwhile
    }
  }
  if (removed.length > 0) log.info({ removed }, "removed empty leftover sandbox cgroups");
  return removed;
}

/** A v2 (unified) hierarchy has `cgroup.controllers` in every directory; v1 has not. */
function isUnified(root: string): boolean {
  return existsSync(join(root, "cgroup.controllers"));
}

function writable(file: string): boolean {
  try {
    accessSync(file, fsConstants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Creates the new directory `<root>/shardworks/<name>`, after letting (in v2) the children of
 * `shardworks` use `controllers`; undefined if it exists already. Errors name the fix.
 */
async function createLeaf(
  root: string,
  controllers: readonly CgroupController[],
  name: string,
): Promise<string | undefined> {
  const parent = join(root, "shardworks");
  await mkdir(parent, { recursive: true }).catch(failed(controllers, root));
  // v2 gives a child a controller's files only if its parent enables it (`shardworks` holds no
  // process itself, so it may).
  if (isUnified(root)) {
    for (const controller of controllers) {
      await writeControl(parent, "cgroup.subtree_control", `+${controller}`).catch(
        failed([controller], root),
      );
    }
  }
  const dir = join(parent, name);
  try {
    await mkdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return undefined;
    failed(controllers, root)(error);
  }
  return dir;
}

async function setMemoryLimit(root: string, dir: string, memoryMiB: number): Promise<void> {
  const bytes = String(memoryMiB * 1024 * 1024);
  if (isUnified(root)) {
    await writeControl(dir, "memory.max", bytes);
    // v2 accounts swap apart: none at all, so the limit is the limit.
    if (existsSync(join(dir, "memory.swap.max"))) await writeControl(dir, "memory.swap.max", "0");
  } else {
    await writeControl(dir, "memory.limit_in_bytes", bytes);
    // Memory + swap (with swap accounting only); after the memory limit, never below it.
    if (existsSync(join(dir, "memory.memsw.limit_in_bytes"))) {
      await writeControl(dir, "memory.memsw.limit_in_bytes", bytes);
    }
  }
}

/** A rejection handler that throws what failed, under which root, the cause and the fix. */
function failed(controllers: readonly CgroupController[], root: string): (error: unknown) => never {
  return (error) => {
    const what = controllers.join(" and ");
    const hierarchies = controllers
      .map(
        (c) =>
          `cgroup v1 /sys/fs/cgroup/${c}, or v2 with "${c}" in /sys/fs/cgroup/cgroup.subtree_control`,
      )
      .join("; ");
    const options = controllers.map((c) => `${c}CgroupRoot`).join(" and ");
    throw new Error(
      `process driver: cannot create a ${what} cgroup under ${root} (${(error as Error).message}); run the node agent as root on a host with the ${what} controller (${hierarchies}), or set ${options} to a writable ${what} hierarchy`,
      { cause: error },
    );
  };
}

/** Writes an existing control file; never creates one (a missing file is a missing controller). */
async function writeControl(dir: string, file: string, value: string): Promise<void> {
  await writeFile(join(dir, file), value, { flag: "r+" });
}
