/** Options of the process driver and the host port range its sandboxes' ports come from. */
import type { ImageStore, ImageStoreOptions } from "../../images";

/** Options of the process driver; every field has a default. */
export interface ProcessDriverOptions {
  /** The image store to use. Default: a new store with `imageStore` options. */
  readonly images?: ImageStore;
  readonly imageStore?: ImageStoreOptions;
  /** bubblewrap binary. Default: `bwrap` on PATH. */
  readonly bwrapPath?: string;
  /** A statically linked busybox, run inside the sandbox as its launcher. Default: `/bin/busybox`. */
  readonly busyboxPath?: string;
  /** slirp4netns binary (Debian `slirp4netns`), the user-mode network of networked sandboxes. */
  readonly slirp4netnsPath?: string;
  /** Most processes (and threads) one sandbox may have, via a pids cgroup. Default: 256. */
  readonly maxPids?: number;
  /**
   * The cgroup v1 `pids` hierarchy (or a cgroup v2 directory with the pids controller). Default:
   * `/sys/fs/cgroup/pids` or `/sys/fs/cgroup`, if writable; none: the process count is not capped.
   */
  readonly pidsCgroupRoot?: string;
  /**
   * The cgroup v1 `memory` hierarchy (or a cgroup v2 directory with the memory controller) that
   * holds each sandbox's memory cgroup: `resources.memoryMiB` for all its processes and tmpfs
   * files together. Default: `/sys/fs/cgroup/memory` or `/sys/fs/cgroup`, if writable; none: the
   * memory limit is per process only (RLIMIT_AS) and probe() says so.
   */
  readonly memoryCgroupRoot?: string;
  /**
   * Host loopback ports the driver forwards `spec.ports` from, `{ min, max }` (inclusive). The
   * sandbox never chooses its host port: slirp4netns binds it as root, so a sandbox naming its
   * own could take a privileged port or one a node service is about to use. Default:
   * `SHARDWORKS_HOST_PORTS` ("30000-32767"), Kubernetes' NodePort range, below Linux's ephemeral
   * range (32768-60999) so outgoing connections and `port: 0` listeners never land in it.
   */
  readonly hostPorts?: HostPortRange;
  /**
   * Load the seccomp filter of `seccomp-filter.py` into every sandbox (default true). It is
   * compiled by libseccomp's Python bindings (Debian `python3-seccomp`) run with `python`.
   * Without them the driver is not usable unless this is false (then probe() says so).
   */
  readonly seccomp?: boolean;
  /** The Python that has libseccomp's bindings. Default: `/usr/bin/python3` (Debian's). */
  readonly python?: string;
  /**
   * The memory limit warm launchers are made for (their memory cgroup, tmpfs sizes and
   * /proc/meminfo are fixed when they start): a sandbox asking for another limit starts cold.
   * Default 128, the spec's default `resources.memoryMiB`.
   */
  readonly warmMemoryMiB?: number;
}

/** An inclusive range of host ports; both ends at least 1024 (never a privileged port). */
export interface HostPortRange {
  readonly min: number;
  readonly max: number;
}

/** The default host port range, from `SHARDWORKS_HOST_PORTS` ("min-max") or 30000-32767. */
export function defaultHostPorts(env: string | undefined = process.env.SHARDWORKS_HOST_PORTS) {
  if (env === undefined || env === "") return { min: 30_000, max: 32_767 };
  const match = /^([0-9]{4,5})-([0-9]{4,5})$/.exec(env.trim());
  if (!match) {
    throw new Error(
      `SHARDWORKS_HOST_PORTS="${env}" must be "min-max", e.g. "30000-32767" (ports 1024-65535)`,
    );
  }
  return checkHostPorts({ min: Number(match[1]), max: Number(match[2]) });
}

export function checkHostPorts(range: HostPortRange): HostPortRange {
  if (
    !Number.isInteger(range.min) ||
    !Number.isInteger(range.max) ||
    range.min < 1024 ||
    range.max > 65_535 ||
    range.min > range.max
  ) {
    throw new Error(
      `process driver: hostPorts ${range.min}-${range.max} must be a range within 1024-65535 (privileged ports are never forwarded)`,
    );
  }
  return range;
}

/** The uid/gid the command runs as, inside the sandbox's own user namespace. */
export const sandboxUid = 1000;
