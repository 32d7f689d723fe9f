/**
 * What every part of the local clusters shares: names, directories, the daemon launcher (each
 * daemon in the cluster's cgroup, the node's daemons in the node's network namespace), and small
 * process helpers.
 */
import { spawn, spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { cacheRoot } from "../tools";
import { cgroupDirs } from "./cgroups";

/** Cluster names become directory names, kubeconfig context names and network namespace names. */
export const ClusterName = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/,
    "a cluster name is 1-40 lowercase letters, digits or '-', e.g. 'local'",
  );

/** Token users of the test suites. */
export const UserName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,30}$/, "a user name is lowercase letters, digits or '-'");

/** Where all clusters live: `~/.cache/shardworks/clusters`. */
export function clustersRoot(): string {
  return join(cacheRoot(), "clusters");
}

/** The directory of cluster `name` (validated). */
export function clusterDir(name: string): string {
  const parsed = ClusterName.safeParse(name);
  if (!parsed.success) {
    throw new Error(`cluster name '${name}': ${parsed.error.issues[0]?.message ?? "invalid"}`);
  }
  return join(clustersRoot(), parsed.data);
}

/** The cgroup (relative to each hierarchy's root) every process of cluster `name` runs under. */
export function clusterCgroup(name: string): string {
  return `/shardworks-clusters/${name}`;
}

/** A progress sink. */
export type Log = (line: string) => void;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Whether `pid` runs and is one of the cluster's (its cgroup lies under `cgroup`). */
export function alive(pid: number, cgroup: string): boolean {
  try {
    if (/^\d+ \(.*\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, "utf8"))) return false;
    return readFileSync(`/proc/${pid}/cgroup`, "utf8")
      .split("\n")
      .some((line) => {
        const path = line.split(":").slice(2).join(":");
        return path === cgroup || path.startsWith(`${cgroup}/`);
      });
  } catch {
    return false;
  }
}

/** What {@link daemon} starts. */
export interface DaemonSpec {
  readonly binary: string;
  readonly args: readonly string[];
  /** Log file (appended). */
  readonly log: string;
  /** The cgroup it runs in (created beforehand by `ensureCgroup`). */
  readonly cgroup: string;
  /** A network namespace (`/run/netns/<name>`) to run it in; the host's when left out. */
  readonly netns?: string;
}

// The launcher joins the cgroups before exec, so not even the daemon's first child escapes them.
// nsenter --net (not `ip netns exec`): the daemon keeps the host's mount namespace, so what the
// kubelet mounts for a pod is what containerd sees.
const LAUNCHER =
  'for d in $SHARDWORKS_CGROUP_DIRS; do echo $$ > "$d/cgroup.procs" || exit 111; done; exec "$@"';

/** Start a daemon detached from us (it outlives `npm run cluster -- up`); returns its pid. */
export function daemon(spec: DaemonSpec): number {
  if (!existsSync(spec.binary) && spec.binary.startsWith("/")) {
    throw new Error(`${spec.binary} is missing; run \`npm run tools\``);
  }
  const fd = openSync(spec.log, "a");
  const command = [
    ...(spec.netns === undefined ? [] : ["nsenter", `--net=/run/netns/${spec.netns}`]),
    "nice",
    "-n",
    "5",
    spec.binary,
    ...spec.args,
  ];
  const child = spawn("sh", ["-c", LAUNCHER, "shardworks-launch", ...command], {
    detached: true,
    stdio: ["ignore", fd, fd],
    env: { ...process.env, SHARDWORKS_CGROUP_DIRS: cgroupDirs(spec.cgroup).join(" ") },
  });
  closeSync(fd);
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start ${spec.binary}`);
  // Until the launcher has joined the cgroup, `alive` would call the daemon dead.
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 200 && !alive(child.pid, spec.cgroup); i++) {
    if (!existsSync(`/proc/${child.pid}`)) break;
    Atomics.wait(pause, 0, 0, 10);
  }
  return child.pid;
}

/** Run a short command; throws with its stderr when it fails. */
export function sh(command: string, args: readonly string[], what?: string): string {
  const result = spawnSync(command, args, { encoding: "utf8" });
  if (result.error !== undefined) {
    throw new Error(`${what ?? command}: ${result.error.message}`);
  }
  if (result.status !== 0) {
    throw new Error(
      `${what ?? `${command} ${args.join(" ")}`} failed: ${(result.stderr || result.stdout).trim()}`,
    );
  }
  return result.stdout;
}

/** The last lines of a log file, for error messages. */
export async function tail(file: string, lines = 12): Promise<string> {
  return existsSync(file)
    ? (await readFile(file, "utf8")).trimEnd().split("\n").slice(-lines).join("\n")
    : "";
}

/** Thrown by a {@link waitFor} check when waiting longer cannot help (a daemon exited). */
export class Fatal extends Error {}

/** Poll `check` until it returns a value; progress every 10 s; throws `failure()` at the deadline. */
export async function waitFor<T>(options: {
  what: string;
  timeoutMs: number;
  log: Log;
  check: () => Promise<T | undefined>;
  failure: (last: string) => Promise<Error>;
  intervalMs?: number;
}): Promise<T> {
  const started = Date.now();
  let last = "";
  let reported = started;
  for (;;) {
    try {
      const value = await options.check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
      if (error instanceof Fatal) throw await options.failure(last);
    }
    if (Date.now() - started > options.timeoutMs) throw await options.failure(last);
    if (Date.now() - reported >= 10_000) {
      reported = Date.now();
      options.log(`waiting for ${options.what}… ${Math.round((reported - started) / 1000)} s`);
    }
    await sleep(options.intervalMs ?? 250);
  }
}

/** Seconds since `started`, for progress lines. */
export function seconds(started: number): string {
  return `${((Date.now() - started) / 1000).toFixed(1)} s`;
}
