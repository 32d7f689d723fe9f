/**
 * The command line of one launcher: bwrap's flags (namespaces, the read-only image root, the
 * launcher bound at `/.shardworks`, the sandbox's own /proc figures, sized tmpfs) and the wrapper
 * that puts it in the sandbox's cgroups before bwrap starts.
 */
import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import { join } from "node:path";
import { sandboxUid } from "./options";

/** Where the launcher (the host's static busybox) is bound inside every sandbox. */
export const launcherDir = "/.shardworks";

/** What {@link launcherArgs} builds a bwrap command line from. */
export interface LauncherLayout {
  /** The image's unpacked root filesystem, bound read-only at `/`. */
  readonly rootfs: string;
  /** The driver's state directory (`launcher/busybox`, `loadavg`, `seccomp.bpf`). */
  readonly state: string;
  /** The /proc/meminfo file of the sandbox's memory limit. */
  readonly meminfo: string;
  /** The size of each tmpfs (/dev/shm, /tmp, /work), bytes. */
  readonly tmpfsBytes: string;
  /** Whether bwrap reads a seccomp program from fd 6. */
  readonly seccomp: boolean;
}

/**
 * bwrap's arguments for a launcher: the tiny shell that signals "ready" on fd 4, reads its
 * script from fd 3 and evals it; bwrap reports the sandbox's pid on fd 5.
 */
export function launcherArgs(how: LauncherLayout): string[] {
  return [
    // Always a new network namespace (never --share-net): with network, slirp4netns gives it
    // a user-mode network that cannot reach the host's loopback.
    "--unshare-all",
    "--unshare-user",
    "--uid",
    String(sandboxUid),
    "--gid",
    String(sandboxUid),
    "--info-fd",
    "5",
    "--die-with-parent",
    "--new-session",
    "--cap-drop",
    "ALL",
    // No user namespace inside this one (the kernel's userns code is a frequent escape path).
    "--disable-userns",
    ...(how.seccomp ? ["--seccomp", "6"] : []),
    "--clearenv",
    "--hostname",
    "sandbox",
    "--ro-bind",
    how.rootfs,
    "/",
    "--ro-bind",
    join(how.state, "launcher"),
    launcherDir,
    "--proc",
    "/proc",
    // The sandbox's own figures, not the host's: its memory limit, no load.
    "--ro-bind",
    how.meminfo,
    "/proc/meminfo",
    "--ro-bind",
    join(how.state, "loadavg"),
    "/proc/loadavg",
    "--dev",
    "/dev",
    // bwrap's /dev is an unsized tmpfs the sandbox's uid may write, /dev/shm a directory in it:
    // /dev/shm becomes a sized tmpfs of its own and the rest of /dev read-only.
    "--size",
    how.tmpfsBytes,
    "--tmpfs",
    "/dev/shm",
    "--remount-ro",
    "/dev",
    "--size",
    how.tmpfsBytes,
    "--tmpfs",
    "/tmp",
    "--size",
    how.tmpfsBytes,
    "--tmpfs",
    "/work",
    `${launcherDir}/busybox`,
    "sh",
    "-c",
    `printf r >&4; IFS= read -r -d "" script <&3; eval "$script"`,
  ];
}

/**
 * Starts `bwrap` with `args`, first joining each of `cgroups`. The wrapper shell joins the
 * cgroups before exec'ing bwrap, so every process and page of the sandbox is counted from its
 * first fork (no window for a fork bomb or an allocation to escape the limits); if it cannot join
 * one, bwrap never starts.
 */
export function spawnInCgroups(
  cgroups: readonly string[],
  bwrap: string,
  args: readonly string[],
  stdio: StdioOptions,
): ChildProcess {
  if (cgroups.length === 0) return spawn(bwrap, args, { stdio });
  return spawn(
    "/bin/sh",
    [
      "-c",
      'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1/cgroup.procs" || exit 1; shift; n=$((n - 1)); done; exec "$@"',
      "sh",
      String(cgroups.length),
      ...cgroups,
      bwrap,
      ...args,
    ],
    { stdio },
  );
}
