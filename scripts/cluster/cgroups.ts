/**
 * The cgroups of a cluster: one subtree `/shardworks-clusters/<name>` in every mounted hierarchy (cgroup v1
 * has one per controller; v2 one in all), holding every daemon of the cluster, the kubelet's
 * `kubepods` tree and so every container. `down` kills what is in it and removes it, so nothing
 * the cluster started can outlive it, whatever state the daemons were in.
 */
import {
  existsSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  writeFileSync,
  mkdirSync,
} from "node:fs";
import { join } from "node:path";

/** Mount points of the cgroup hierarchies (`cgroup` and `cgroup2` file systems). */
export function hierarchies(): string[] {
  const points = new Set<string>();
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const [left, right] = line.split(" - ");
    const fstype = right?.split(" ")[0];
    const mountPoint = left?.split(" ")[4];
    if ((fstype === "cgroup" || fstype === "cgroup2") && mountPoint !== undefined) {
      points.add(mountPoint);
    }
  }
  return [...points];
}

/** The directories of cgroup `path` (e.g. `/shardworks-clusters/local/node`), one per hierarchy. */
export function cgroupDirs(path: string): string[] {
  return hierarchies().map((h) => join(h, path));
}

/**
 * Create cgroup `path` in every hierarchy. In the v1 cpuset hierarchy a new cgroup has no CPUs or
 * memory nodes until given some, and no process can join it: each level copies its parent's.
 */
export function ensureCgroup(path: string): void {
  for (const h of hierarchies()) {
    let dir = h;
    for (const part of path.split("/").filter(Boolean)) {
      const parent = dir;
      dir = join(dir, part);
      if (!existsSync(dir)) mkdirSync(dir);
      for (const file of ["cpuset.cpus", "cpuset.mems"]) {
        const own = join(dir, file);
        if (existsSync(own) && readFileSync(own, "utf8").trim() === "") {
          writeFileSync(own, readFileSync(join(parent, file), "utf8").trim());
        }
      }
    }
  }
}

function subtree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const dirs = [dir];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) dirs.push(...subtree(join(dir, entry.name)));
  }
  return dirs;
}

/** Every process in cgroup `path` or below it, in any hierarchy. */
export function pidsIn(path: string): number[] {
  const pids = new Set<number>();
  for (const dir of cgroupDirs(path).flatMap(subtree)) {
    try {
      for (const line of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n")) {
        if (line.trim() !== "") pids.add(Number(line));
      }
    } catch {
      // removed meanwhile
    }
  }
  return [...pids];
}

/** Remove cgroup `path` and everything below it, deepest first, in every hierarchy. */
export function removeCgroup(path: string): string[] {
  const left: string[] = [];
  for (const dir of cgroupDirs(path).flatMap(subtree).reverse()) {
    try {
      rmdirSync(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") left.push(dir);
    }
  }
  return left;
}

/** Remove `/shardworks-clusters` itself when no cluster is left in it. */
export function removeEmptyRoot(root = "/shardworks-clusters"): void {
  for (const dir of cgroupDirs(root)) {
    try {
      rmdirSync(dir);
    } catch {
      // another cluster still runs, or it never existed
    }
  }
}
