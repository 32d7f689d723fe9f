/** Whether the process driver can run on this host, and what it isolates (its capabilities). */
import { Driver } from "../../../../contract/model";
import type { ProbeResult } from "../../driver";
import { runCaptured } from "./exec";
import type { HostPortRange } from "./options";
import { seccompFilter } from "./seccomp";
import { sandboxUid } from "./options";

/** What the probe checks and reports. */
export interface ProbeHost {
  readonly bwrap: string;
  readonly busybox: string;
  readonly seccomp: boolean;
  readonly python: string;
  readonly hostPorts: HostPortRange;
  /** The process cap, when a pids cgroup enforces it; undefined when none can. */
  readonly maxPids: number | undefined;
  /** Whether each sandbox gets a memory cgroup of `resources.memoryMiB` (else RLIMIT_AS only). */
  readonly memoryCgroup: boolean;
  /** Why there is no pids or no memory hierarchy, as found (named in the reason). */
  readonly cgroupGaps?: readonly string[];
  /**
   * Run without a memory cgroup or a process cap where there is none
   * (`SHARDWORKS_PROCESS_UNLIMITED=1`, development hosts only); otherwise not usable then.
   */
  readonly unlimited: boolean;
}

/** Run bubblewrap once (and compile the seccomp filter): usable, or the reason and the fix. */
export async function probeProcessDriver(host: ProbeHost): Promise<ProbeResult> {
  // Fail closed: a sandbox without its memory cgroup or its process cap could take the node's
  // memory or processes, so that takes an explicit opt-out.
  const missing = [
    ...(host.memoryCgroup ? [] : ["no memory cgroup (a memory limit for the whole sandbox)"]),
    ...(host.maxPids === undefined ? ["no pids cgroup (a process cap)"] : []),
  ];
  if (missing.length > 0 && !host.unlimited) {
    const why = host.cgroupGaps?.length ? ` (${host.cgroupGaps.join("; ")})` : "";
    return {
      usable: false,
      reason: `sandboxes would have ${missing.join(" and ")}${why}; run the node agent as root where it can write /sys/fs/cgroup (cgroup v1 memory and pids hierarchies, or v2 with the memory and pids controllers), or set memoryCgroupRoot/pidsCgroupRoot; only on a development host without cgroup access, SHARDWORKS_PROCESS_UNLIMITED=1 runs them without`,
    };
  }
  const bwrap = await runCaptured(
    host.bwrap,
    [
      "--unshare-all",
      "--die-with-parent",
      "--cap-drop",
      "ALL",
      "--ro-bind",
      "/",
      "/",
      "--proc",
      "/proc",
      "--dev",
      "/dev",
      host.busybox,
      "true",
    ],
    10_000,
  );
  if (bwrap.spawnError !== undefined) {
    return {
      usable: false,
      reason: `cannot run bubblewrap "${host.bwrap}" (${bwrap.spawnError}); install Debian's bubblewrap`,
    };
  }
  if (bwrap.status !== 0) {
    const stderr = bwrap.stderr.toString().trim();
    const reason = /busybox|No such file/.test(stderr)
      ? `the launcher ${host.busybox} is missing; install Debian's busybox-static`
      : `bubblewrap cannot create namespaces here (${stderr || `exit ${bwrap.status}`})`;
    return { usable: false, reason };
  }
  if (host.seccomp) {
    try {
      await seccompFilter(host.python);
    } catch (error) {
      return { usable: false, reason: (error as Error).message };
    }
  }
  return {
    usable: true,
    capabilities: {
      driver: Driver.Process,
      hardwareIsolated: false,
      warmStart: "prestarted",
      snapshots: false,
      liveMigration: false,
      notes: [
        "process driver: Linux namespaces only (bubblewrap), NOT hardware-isolated; the sandbox shares the host kernel",
        host.memoryCgroup
          ? "memory limit: resources.memoryMiB for the whole sandbox (memory cgroup: all its processes, their kernel memory and the tmpfs files they write, /dev/shm included; swap cannot extend it; past it the kernel OOM-kills inside the sandbox), and RLIMIT_AS of the same per process; CPU is not limited"
          : "memory NOT limited per sandbox (no writable memory cgroup on this host, SHARDWORKS_PROCESS_UNLIMITED=1): only RLIMIT_AS = resources.memoryMiB per process and the tmpfs sizes, so several processes together can use more; CPU is not limited",
        `network: none unless spec.network; with it, the sandbox gets its own network namespace with user-mode networking (slirp4netns --disable-host-loopback): it cannot reach the host's loopback (etcd, agent API); each of spec.ports is forwarded from a host loopback port the driver picks in ${host.hostPorts.min}-${host.hostPorts.max} (listen on 0.0.0.0 inside; status.endpoints says where)`,
        `runs as uid ${sandboxUid} in its own user namespace, all capabilities dropped, no nested user namespaces (bwrap --disable-userns)`,
        host.seccomp
          ? "seccomp filter: keyrings, bpf, perf, io_uring, ptrace, mount/unshare/setns, modules, kexec, clocks and other host-wide syscalls fail with EPERM"
          : "NO seccomp filter (seccomp: false)",
        "/tmp, /work and /dev/shm are tmpfs of half the memory limit each, the rest of /dev read-only; /proc/meminfo shows the memory limit, /proc/loadavg zeros (other /proc files still show host figures)",
        host.maxPids !== undefined
          ? `at most ${host.maxPids} processes per sandbox (pids cgroup)`
          : "process count NOT limited (no writable pids cgroup on this host, SHARDWORKS_PROCESS_UNLIMITED=1)",
      ],
    },
  };
}
