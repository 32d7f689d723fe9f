/**
 * The cgroups of one process sandbox, the limits the host enforces outside bwrap: a pids cgroup
 * (the process cap) and a memory cgroup (the memory limit of all its processes and tmpfs files
 * together), in the hierarchies `cgroup-hierarchy.ts` finds.
 *
 * Each sandbox gets `<root>/shardworks/<name>` in the hierarchy of each controller: with cgroup v1
 * one directory per controller, with v2 one directory holding both limits. `<name>` is random and
 * always a new directory: a leftover cgroup (an agent that crashed) is never reused, and two
 * agents sharing a hierarchy never share a cgroup.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, rmdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { backoffDelay, type Backoff } from "../../../lib/backoff";
import { logger } from "../../../lib/logger";
import type { CgroupController } from "./cgroup-hierarchy";

const log = logger.child({ component: "process-driver" });

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

/**
 * 10 ms doubling to 250 ms, unjittered: a wait for this host's kernel, which no other replica
 * retries against.
 */
const CGROUP_REMOVAL_BACKOFF: Backoff = { baseMs: 10, maxMs: 250, spread: 0 };

/** Removes a sandbox's cgroup once the kernel has emptied it; logs if it stays busy. */
export async function removeCgroup(dir: string): Promise<void> {
  // Emptied asynchronously by the kernel after the last process is reaped: retry for up to 5 s
  // (what stays is removed by the next driver's probe, see removeLeftoverCgroups).
  const deadline = Date.now() + 5000;
  for (let attempt = 0; ; attempt += 1) {
    try {
      await rmdir(dir);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      if (Date.now() >= deadline) break;
      await delay(backoffDelay(attempt, CGROUP_REMOVAL_BACKOFF));
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
