/**
 * The resource limits of a process sandbox that the host enforces outside bwrap: a pids cgroup
 * (the process cap), a memory cgroup (the memory limit of all its processes and tmpfs files
 * together) and a /proc/meminfo that shows the memory limit.
 *
 * Each sandbox gets `<root>/shardworks/<name>` in the hierarchy of each controller: with cgroup v1
 * one directory per controller, with v2 one directory (both roots are `/sys/fs/cgroup`) holding
 * both limits.
 */
import { accessSync, constants as fsConstants, existsSync, readFileSync } from "node:fs";
import { mkdir, rmdir, writeFile } from "node:fs/promises";
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

/**
 * The hierarchy of `controller` (v1 `/sys/fs/cgroup/<controller>`, or v2 `/sys/fs/cgroup` with the
 * controller enabled for its children) if we may write it; undefined when not (probe() says so).
 */
export function defaultCgroupRoot(controller: CgroupController): string | undefined {
  const base = "/sys/fs/cgroup";
  const v1 = join(base, controller);
  try {
    if (existsSync(join(v1, "tasks"))) {
      accessSync(join(v1, "cgroup.procs"), fsConstants.W_OK);
      return v1;
    }
    const enabled = readFileSync(join(base, "cgroup.subtree_control"), "utf8").split(/\s+/);
    if (enabled.includes(controller)) {
      accessSync(join(base, "cgroup.procs"), fsConstants.W_OK);
      return base;
    }
  } catch {
    // not writable, or no such controller: no limit (probe() says so)
  }
  return undefined;
}

/** The pids cgroup of sandbox `name`: at most `maxPids` processes and threads. */
export function pidsCgroup(root: string, name: string, maxPids: number): Promise<string> {
  return createCgroup(root, name, "pids", (dir) => writeControl(dir, "pids.max", String(maxPids)));
}

/**
 * The memory cgroup of sandbox `name`: `memoryMiB` for all its processes together, including the
 * tmpfs pages they write (/tmp, /work, /dev/shm) and kernel memory, and swap cannot extend it.
 * Past the limit the kernel reclaims, then OOM-kills inside the sandbox, never elsewhere.
 */
export function memoryCgroup(root: string, name: string, memoryMiB: number): Promise<string> {
  const bytes = String(memoryMiB * 1024 * 1024);
  return createCgroup(root, name, "memory", async (dir) => {
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
  });
}

/**
 * Creates and removes a throwaway cgroup of `controller` under `root`, limit set, as a sandbox's
 * would be: throws (naming the root, the error and the fix) when sandboxes could not get one.
 */
export async function checkCgroupRoot(root: string, controller: CgroupController): Promise<void> {
  const name = `probe-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const dir =
    controller === "pids" ? await pidsCgroup(root, name, 1) : await memoryCgroup(root, name, 1);
  await removeCgroup(dir);
}

export async function removeCgroup(dir: string): Promise<void> {
  // Emptied asynchronously by the kernel after the last process is reaped: retry briefly.
  for (let attempt = 0; attempt < 50; attempt += 1) {
    try {
      await rmdir(dir);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      await delay(20);
    }
  }
  log.warn({ cgroup: dir }, "could not remove a sandbox's cgroup");
}

/** A v2 (unified) hierarchy has `cgroup.controllers` in every directory; v1 has not. */
function isUnified(root: string): boolean {
  return existsSync(join(root, "cgroup.controllers"));
}

/**
 * Creates `<root>/shardworks/<name>` and sets its limits with `limit`; in v2, first lets the
 * children of `shardworks` use `controller`. On failure nothing is left behind and the error names
 * the root, the cause and the fix.
 */
async function createCgroup(
  root: string,
  name: string,
  controller: CgroupController,
  limit: (dir: string) => Promise<void>,
): Promise<string> {
  const parent = join(root, "shardworks");
  const dir = join(parent, name);
  try {
    await mkdir(parent, { recursive: true });
    // v2 gives a child a controller's files only if its parent enables it (`shardworks` holds no
    // process itself, so it may).
    if (isUnified(root)) await writeControl(parent, "cgroup.subtree_control", `+${controller}`);
    await mkdir(dir, { recursive: true });
    await limit(dir);
    return dir;
  } catch (error) {
    await rmdir(dir).catch(() => undefined);
    throw new Error(
      `process driver: cannot create a ${controller} cgroup under ${root} (${(error as Error).message}); run the node agent as root on a host with the ${controller} controller (cgroup v1 /sys/fs/cgroup/${controller}, or v2 with "${controller}" in /sys/fs/cgroup/cgroup.subtree_control), or set ${controller}CgroupRoot to a writable ${controller} hierarchy`,
      { cause: error },
    );
  }
}

/** Writes an existing control file; never creates one (a missing file is a missing controller). */
async function writeControl(dir: string, file: string, value: string): Promise<void> {
  await writeFile(join(dir, file), value, { flag: "r+" });
}
