/**
 * The resource limits of a process sandbox that the host enforces outside bwrap: a pids cgroup
 * (the process cap) and a /proc/meminfo that shows the memory limit.
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

/** The pids cgroup hierarchy (v1 `pids`, or v2 with the pids controller) if we may write it. */
export function defaultPidsRoot(): string | undefined {
  const v1 = "/sys/fs/cgroup/pids";
  const v2 = "/sys/fs/cgroup";
  try {
    if (existsSync(join(v1, "pids.max")) || existsSync(join(v1, "tasks"))) {
      accessSync(join(v1, "cgroup.procs"), fsConstants.W_OK);
      return v1;
    }
    if (readFileSync(join(v2, "cgroup.subtree_control"), "utf8").includes("pids")) {
      accessSync(join(v2, "cgroup.procs"), fsConstants.W_OK);
      return v2;
    }
  } catch {
    // not writable: no cap (probe() says so)
  }
  return undefined;
}

export async function pidsCgroup(root: string, name: string, maxPids: number): Promise<string> {
  const dir = join(root, "shardworks", name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "pids.max"), String(maxPids));
  return dir;
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
  log.warn({ cgroup: dir }, "could not remove a sandbox's pids cgroup");
}
