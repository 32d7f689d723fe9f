/**
 * The `process` driver: each sandbox is a bubblewrap sandbox (Linux namespaces) over the image's
 * root filesystem, mounted read-only. Fast and runnable anywhere bubblewrap is, but it is NOT
 * hardware isolation: the sandbox shares the host kernel. `probe()` says so.
 *
 * Every sandbox starts a tiny launcher inside bwrap: the host's static busybox `sh` (bound
 * read-only at `/.shardworks`), which signals "ready" on fd 4, reads a script (env, limits, the
 * command) from fd 3 and `exec`s the command. A warm start hands that script to a launcher that
 * was started earlier; a cold start starts the launcher first.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import {
  accessSync,
  closeSync,
  constants as fsConstants,
  createWriteStream,
  existsSync,
  openSync,
  readFileSync,
} from "node:fs";
import { copyFile, mkdir, mkdtemp, rm, rmdir, writeFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { constants as osConstants, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Readable, Writable } from "node:stream";
import { logger } from "../../lib/logger";
import { Driver } from "../../lib/model";
import type {
  ProbeResult,
  RunRequest,
  RunningSandbox,
  SandboxDriver,
  SandboxExit,
} from "../driver";
import { ImageStore, type ImageStoreOptions, type PreparedImage } from "../images";
import { launchScript } from "./launch-script";

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
  /** The cgroup v1 `pids` hierarchy (or a cgroup v2 directory with the pids controller). */
  readonly pidsCgroupRoot?: string;
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
   * The memory limit warm launchers are made for (their tmpfs sizes and /proc/meminfo are fixed
   * when they start): a sandbox asking for another limit starts cold. Default 128, the spec's
   * default `resources.memoryMiB`.
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

function checkHostPorts(range: HostPortRange): HostPortRange {
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

const log = logger.child({ component: "process-driver" });
const launcherDir = "/.shardworks";

/** Creates the `process` driver. */
export function createProcessDriver(options: ProcessDriverOptions = {}): ProcessDriver {
  return new ProcessDriver(options);
}

/** bubblewrap sandboxes with a pre-started pool per image for warm starts. */
export class ProcessDriver implements SandboxDriver {
  readonly name = Driver.Process;
  readonly #images: ImageStore;
  readonly #bwrap: string;
  readonly #busybox: string;
  readonly #prepared = new Map<string, Promise<PreparedImage>>();
  /** Warm launchers (network off) per image, and how many to keep. */
  readonly #pools = new Map<string, { target: number; ready: Launcher[]; filling: number }>();
  readonly #live = new Set<Launcher>();
  readonly #filling = new Set<Promise<unknown>>();
  readonly #slirp: string;
  readonly #maxPids: number;
  readonly #pidsRoot: string | undefined;
  readonly #hostPorts: HostPortRange;
  /** Host ports forwarded to a live sandbox now (slirp4netns refuses a taken one anyway). */
  readonly #usedHostPorts = new Set<number>();
  readonly #seccomp: boolean;
  readonly #python: string;
  readonly #warmMemoryMiB: number;
  #stateDir: Promise<string> | undefined;
  #closed = false;
  #launched = 0;
  readonly #cleanups = new Set<Promise<void>>();

  constructor(options: ProcessDriverOptions = {}) {
    this.#images = options.images ?? new ImageStore(options.imageStore);
    this.#bwrap = options.bwrapPath ?? "bwrap";
    this.#busybox = options.busyboxPath ?? "/bin/busybox";
    this.#slirp = options.slirp4netnsPath ?? "slirp4netns";
    this.#maxPids = options.maxPids ?? 256;
    this.#pidsRoot = options.pidsCgroupRoot ?? defaultPidsRoot();
    this.#hostPorts = checkHostPorts(options.hostPorts ?? defaultHostPorts());
    this.#seccomp = options.seccomp ?? true;
    this.#python = options.python ?? "/usr/bin/python3";
    this.#warmMemoryMiB = options.warmMemoryMiB ?? 128;
  }

  async probe(): Promise<ProbeResult> {
    const bwrap = await runCaptured(
      this.#bwrap,
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
        this.#busybox,
        "true",
      ],
      10_000,
    );
    if (bwrap.spawnError !== undefined) {
      return {
        usable: false,
        reason: `cannot run bubblewrap "${this.#bwrap}" (${bwrap.spawnError}); install Debian's bubblewrap`,
      };
    }
    if (bwrap.status !== 0) {
      const stderr = bwrap.stderr.toString().trim();
      const reason = /busybox|No such file/.test(stderr)
        ? `the launcher ${this.#busybox} is missing; install Debian's busybox-static`
        : `bubblewrap cannot create namespaces here (${stderr || `exit ${bwrap.status}`})`;
      return { usable: false, reason };
    }
    if (this.#seccomp) {
      try {
        await compileSeccompFilter(this.#python);
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
          "memory limit enforced as an address-space limit (RLIMIT_AS = resources.memoryMiB); CPU is not limited",
          `network: none unless spec.network; with it, the sandbox gets its own network namespace with user-mode networking (slirp4netns --disable-host-loopback): it cannot reach the host's loopback (etcd, agent API); each of spec.ports is forwarded from a host loopback port the driver picks in ${this.#hostPorts.min}-${this.#hostPorts.max} (listen on 0.0.0.0 inside; status.endpoints says where)`,
          `runs as uid ${sandboxUid} in its own user namespace, all capabilities dropped, no nested user namespaces (bwrap --disable-userns)`,
          this.#seccomp
            ? "seccomp filter: keyrings, bpf, perf, io_uring, ptrace, mount/unshare/setns, modules, kexec, clocks and other host-wide syscalls fail with EPERM"
            : "NO seccomp filter (seccomp: false)",
          "/tmp and /work are tmpfs of half the memory limit each; /proc/meminfo shows the memory limit, /proc/loadavg zeros (other /proc files still show host figures)",
          this.#pidsRoot
            ? `at most ${this.#maxPids} processes per sandbox (pids cgroup)`
            : "process count NOT limited (no writable pids cgroup on this host)",
        ],
      },
    };
  }

  async prepare(image: string): Promise<void> {
    await this.#prepare(image);
  }

  async warm(image: string, count: number): Promise<void> {
    const prepared = await this.#prepare(image);
    const pool = this.#pool(image);
    pool.target = count;
    await Promise.allSettled(this.#filling);
    while (pool.ready.length > count) pool.ready.pop()?.kill();
    await this.#fill(image, prepared);
    // Refills already under way count towards the target: wait for them too.
    await Promise.allSettled(this.#filling);
  }

  async run(request: RunRequest): Promise<RunningSandbox> {
    const started = performance.now();
    const { spec } = request;
    if (this.#closed) throw new Error("process driver: closed");
    if (spec.ports.length > 0 && !spec.network) {
      throw new Error(
        "process driver: spec.ports needs spec.network: true (a sandbox without network has its own empty network namespace; with network the ports are forwarded from the host loopback)",
      );
    }
    const prepared = await this.#prepare(spec.image);
    const script = `exec 3<&-\n${launchScript(spec, prepared.config, { beforeExec: ["printf s >&4", "exec 4>&-"] })}`;
    // Warm launchers have the network, tmpfs sizes and /proc/meminfo of the default sandbox.
    const warmable = !spec.network && spec.resources.memoryMiB === this.#warmMemoryMiB;
    let launcher = warmable ? this.#takeWarm(spec.image) : undefined;
    const start = launcher ? "warm" : "cold";
    const forwarded = new Map<number, number>();
    launcher ??= await this.#launch(prepared, {
      network: spec.network,
      ports: spec.ports,
      forwarded,
      memoryMiB: spec.resources.memoryMiB,
    });
    const exit = launcher.attach(request.logFile);
    await launcher.start(script);
    if (start === "warm") {
      // Refill after the command started, so the refill's spawn is not on this start's path.
      this.#fill(spec.image, prepared).catch((error: unknown) =>
        log.warn({ err: error, image: spec.image }, "warm pool refill failed"),
      );
    }
    const endpoints: Record<string, string> = {};
    for (const [guest, host] of forwarded) endpoints[String(guest)] = `127.0.0.1:${host}`;
    const startMillis = performance.now() - started;
    log.debug({ id: request.id, start, startMillis }, "sandbox started");
    const owned = launcher;
    return {
      id: request.id,
      start,
      startMillis,
      endpoints,
      exit,
      stop: async () => {
        owned.kill();
        await exit;
      },
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#pools.clear();
    await Promise.allSettled(this.#filling);
    const live = [...this.#live];
    for (const launcher of live) launcher.kill();
    await Promise.all(live.map((l) => l.exited));
    await Promise.allSettled([...this.#cleanups]);
    const state = this.#stateDir;
    this.#stateDir = undefined;
    if (state) await rm(await state, { recursive: true, force: true });
  }

  #prepare(image: string): Promise<PreparedImage> {
    let pending = this.#prepared.get(image);
    if (!pending) {
      pending = this.#images.prepare(image);
      this.#prepared.set(image, pending);
      // A failed prepare is not cached: the next call tries again.
      pending.catch(() => this.#prepared.delete(image));
    }
    return pending;
  }

  #pool(image: string): { target: number; ready: Launcher[]; filling: number } {
    let pool = this.#pools.get(image);
    if (!pool) {
      pool = { target: 0, ready: [], filling: 0 };
      this.#pools.set(image, pool);
    }
    return pool;
  }

  #takeWarm(image: string): Launcher | undefined {
    const pool = this.#pools.get(image);
    if (!pool) return undefined;
    let launcher: Launcher | undefined;
    while ((launcher = pool.ready.shift()) && !launcher.alive);
    return launcher;
  }

  async #fill(image: string, prepared: PreparedImage): Promise<void> {
    const pool = this.#pool(image);
    const missing = pool.target - pool.ready.length - pool.filling;
    if (missing <= 0) return;
    pool.filling += missing;
    const launching = Promise.allSettled(
      Array.from({ length: missing }, () =>
        this.#launch(prepared, { network: false, memoryMiB: this.#warmMemoryMiB }),
      ),
    );
    this.#filling.add(launching);
    const launched = await launching;
    this.#filling.delete(launching);
    pool.filling -= missing;
    for (const result of launched) {
      if (result.status === "rejected") continue;
      const wanted =
        !this.#closed && this.#pools.get(image) === pool && pool.ready.length < pool.target;
      if (!wanted) result.value.kill();
      else pool.ready.push(result.value);
    }
    const failed = launched.find((r) => r.status === "rejected");
    if (failed && !this.#closed) throw failed.reason;
  }

  async #state(): Promise<string> {
    this.#stateDir ??= (async () => {
      const dir = await mkdtemp(join(tmpdir(), "shardworks-process-"));
      await mkdir(join(dir, "launcher"));
      await copyFile(this.#busybox, join(dir, "launcher", "busybox"));
      if (this.#seccomp)
        await writeFile(join(dir, "seccomp.bpf"), await compileSeccompFilter(this.#python));
      // What the sandbox reads as the system's load: nothing (the host's would tell it what
      // else runs on the node).
      await writeFile(join(dir, "loadavg"), "0.00 0.00 0.00 1/1 1\n");
      return dir;
    })();
    return this.#stateDir;
  }

  /**
   * Starts bwrap with the launcher waiting for its script; resolves once it is ready (and, with
   * network, once its user-mode network is up and its ports are forwarded).
   */
  async #launch(prepared: PreparedImage, how: LaunchOptions): Promise<Launcher> {
    const { network, memoryMiB } = how;
    const ports = how.ports ?? [];
    const forwarded = how.forwarded ?? new Map<number, number>();
    const state = await this.#state();
    this.#launched += 1;
    const name = `${process.pid}-${this.#launched}`;
    const meminfo = join(state, `meminfo-${memoryMiB}`);
    if (!existsSync(meminfo)) await writeFile(meminfo, meminfoFor(memoryMiB));
    // Each tmpfs gets half the memory limit: writing files there spends kernel memory that the
    // address-space limit does not count, so both together stay within the limit.
    const tmpfsBytes = String(Math.max(1, Math.floor(memoryMiB / 2)) * 1024 * 1024);
    const cgroup = this.#pidsRoot
      ? await pidsCgroup(this.#pidsRoot, name, this.#maxPids)
      : undefined;
    const args = [
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
      ...(this.#seccomp ? ["--seccomp", "6"] : []),
      "--clearenv",
      "--hostname",
      "sandbox",
      "--ro-bind",
      prepared.rootfs,
      "/",
      "--ro-bind",
      join(state, "launcher"),
      launcherDir,
      "--proc",
      "/proc",
      // The sandbox's own figures, not the host's: its memory limit, no load.
      "--ro-bind",
      meminfo,
      "/proc/meminfo",
      "--ro-bind",
      join(state, "loadavg"),
      "/proc/loadavg",
      "--dev",
      "/dev",
      "--size",
      tmpfsBytes,
      "--tmpfs",
      "/tmp",
      "--size",
      tmpfsBytes,
      "--tmpfs",
      "/work",
      `${launcherDir}/busybox`,
      "sh",
      "-c",
      `printf r >&4; IFS= read -r -d "" script <&3; eval "$script"`,
    ];
    // fd 6: the seccomp program, opened per launch (bwrap reads it to the end; a shared
    // descriptor would share the read offset).
    const filter = this.#seccomp ? openSync(join(state, "seccomp.bpf"), "r") : undefined;
    const stdio: ("ignore" | "pipe" | number)[] = [
      "ignore",
      "pipe",
      "pipe",
      "pipe",
      "pipe",
      "pipe",
    ];
    if (filter !== undefined) stdio.push(filter);
    // The wrapper shell joins the pids cgroup before exec'ing bwrap, so every process of the
    // sandbox is counted from its first fork (no window for a fork bomb to escape the cap).
    const child = cgroup
      ? spawn(
          "/bin/sh",
          [
            "-c",
            'echo $$ > "$1/cgroup.procs" && shift && exec "$@"',
            "sh",
            cgroup,
            this.#bwrap,
            ...args,
          ],
          { stdio },
        )
      : spawn(this.#bwrap, args, { stdio });
    if (filter !== undefined) closeSync(filter);
    const launcher = new Launcher(child);
    this.#live.add(launcher);
    const cleanup = launcher.exited.then(async () => {
      this.#live.delete(launcher);
      if (cgroup) await removeCgroup(cgroup);
    });
    // close() waits for these, so no empty cgroup outlives the driver.
    this.#cleanups.add(cleanup);
    void cleanup.finally(() => this.#cleanups.delete(cleanup));
    if (this.#closed) launcher.kill();
    const childPid = readInfoPid((child.stdio as unknown as Readable[])[5] as Readable);
    childPid.catch(() => undefined);
    await launcher.ready;
    if (network) {
      try {
        launcher.onExit(() => {
          for (const host of forwarded.values()) this.#usedHostPorts.delete(host);
        });
        const slirp = await startSlirp(
          this.#slirp,
          await childPid,
          join(state, `slirp-${name}.sock`),
        );
        launcher.onExit(() => slirp.kill("SIGKILL"));
        for (const guest of ports) {
          forwarded.set(guest, await this.#forward(join(state, `slirp-${name}.sock`), guest));
        }
      } catch (error) {
        launcher.kill();
        throw error;
      }
    }
    return launcher;
  }

  /**
   * Forwards a free host port of {@link ProcessDriverOptions.hostPorts} to `guest`; tries the
   * range from a random point, skipping ports in use (ours, or bound by anything else on the host:
   * slirp4netns's bind fails then).
   */
  async #forward(apiSocket: string, guest: number): Promise<number> {
    const { min, max } = this.#hostPorts;
    const size = max - min + 1;
    const first = Math.floor(Math.random() * size);
    let lastError: Error | undefined;
    for (let i = 0, tries = 0; i < size && tries < 64; i += 1) {
      const host = min + ((first + i) % size);
      if (this.#usedHostPorts.has(host)) continue;
      tries += 1;
      this.#usedHostPorts.add(host);
      try {
        await slirpForward(apiSocket, host, guest);
        return host;
      } catch (error) {
        this.#usedHostPorts.delete(host);
        lastError = error as Error;
      }
    }
    throw new Error(
      `process driver: no free host port in ${min}-${max} to forward guest port ${guest} (${lastError?.message ?? "all in use"}); widen hostPorts (SHARDWORKS_HOST_PORTS)`,
    );
  }
}

/** How {@link ProcessDriver} starts one launcher. */
interface LaunchOptions {
  readonly network: boolean;
  /** The sandbox's memory limit: sizes its tmpfs mounts and its /proc/meminfo. */
  readonly memoryMiB: number;
  readonly ports?: readonly number[];
  /** Filled with guest port → host port as ports are forwarded. */
  readonly forwarded?: Map<number, number>;
}

/** A /proc/meminfo whose totals are the sandbox's memory limit (what `free` and runtimes read). */
function meminfoFor(memoryMiB: number): string {
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

/**
 * The seccomp filter as the BPF program bwrap loads, compiled by libseccomp (see
 * `seccomp-filter.py`: libseccomp has no maintained Node binding, its own Python one is in Debian).
 */
export async function compileSeccompFilter(python = "/usr/bin/python3"): Promise<Buffer> {
  const script = join(__dirname, "seccomp-filter.py");
  const result = await runCaptured(python, [script], 20_000);
  if (result.spawnError !== undefined || result.status !== 0 || result.stdout.length === 0) {
    const why = result.spawnError ?? result.stderr.toString().trim().split("\n").pop() ?? "";
    throw new Error(
      `cannot compile the seccomp filter with ${python} (${why || `exit ${result.status}`}); install Debian's python3-seccomp, or set seccomp: false to run sandboxes without it`,
    );
  }
  return result.stdout;
}

const execFileAsync = promisify(execFile);

/** What {@link runCaptured} saw: the spawn failure (errno or timeout), or the exit status and output. */
interface Captured {
  spawnError?: string;
  status: number | null;
  stdout: Buffer;
  stderr: Buffer;
}

/** Run a short command without blocking the event loop; never rejects. */
async function runCaptured(file: string, args: string[], timeoutMs: number): Promise<Captured> {
  try {
    const { stdout, stderr } = await execFileAsync(file, args, {
      timeout: timeoutMs,
      maxBuffer: 1024 * 1024,
      encoding: "buffer",
    });
    return { status: 0, stdout, stderr };
  } catch (error) {
    const e = error as NodeJS.ErrnoException & {
      code?: string | number;
      killed?: boolean;
      stdout?: Buffer;
      stderr?: Buffer;
    };
    const empty = Buffer.alloc(0);
    const spawnError =
      typeof e.code === "string"
        ? e.code
        : e.killed
          ? `timed out after ${timeoutMs} ms`
          : undefined;
    return {
      ...(spawnError === undefined ? {} : { spawnError }),
      status: typeof e.code === "number" ? e.code : null,
      stdout: e.stdout ?? empty,
      stderr: e.stderr ?? empty,
    };
  }
}

/**
 * Every bwrap this process started and that still runs. bwrap's --die-with-parent kills the
 * sandbox when we die, but a bwrap caught mid-setup can outlive us; killing them on exit is cheap.
 * The exit hook is installed with the first launcher, not on import.
 */
const allLaunchers = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Track a launcher until it exits; the first one installs the kill-on-exit hook. */
function trackLauncher(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const c of allLaunchers) c.kill("SIGKILL");
    });
  }
  allLaunchers.add(child);
  child.once("exit", () => allLaunchers.delete(child));
}

/** One bwrap process running the launcher. */
class Launcher {
  readonly ready: Promise<void>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #child: ChildProcess;
  readonly #signals: Readable;
  #alive = true;
  #stderr = "";

  constructor(child: ChildProcess) {
    this.#child = child;
    trackLauncher(child);
    this.#signals = child.stdio[4] as Readable;
    this.exited = new Promise((resolve) => {
      child.once("close", (code, signal) => resolve({ code, signal }));
      child.once("error", () => resolve({ code: null, signal: null }));
    });
    void this.exited.then(() => {
      this.#alive = false;
    });
    // Flowing from the start: a paused stdout would never end, and 'close' would never come. The
    // launcher prints nothing before its command runs, so nothing is lost before attach().
    child.stdout?.resume();
    // bwrap's own complaints (before the launcher runs) are kept for the failure reason.
    child.stderr?.on("data", (chunk: Buffer) => {
      if (this.#stderr.length < 4096) this.#stderr += chunk.toString("utf8");
    });
    this.ready = this.#expect("r");
    this.ready.catch(() => undefined);
  }

  get alive(): boolean {
    return this.#alive;
  }

  /** Sends the output to `logFile`; the promise settles when the sandbox has ended and the log is flushed. */
  attach(logFile: string): Promise<SandboxExit> {
    const out = createWriteStream(logFile, { flags: "a" });
    const stdout = this.#child.stdout as Readable;
    const stderr = this.#child.stderr as Readable;
    if (this.#stderr) out.write(this.#stderr);
    stderr.removeAllListeners("data");
    stdout.pipe(out, { end: false });
    stderr.pipe(out, { end: false });
    return this.exited.then(async ({ code, signal }): Promise<SandboxExit> => {
      out.end();
      await once(out, "close").catch(() => undefined);
      if (code !== null) return { kind: "exited", code };
      if (signal !== null) return { kind: "exited", code: 128 + (signalNumber(signal) ?? 0) };
      return { kind: "failed", reason: "bubblewrap could not be started" };
    });
  }

  /** Hands the launcher its script; resolves once the command is being exec'd. */
  async start(script: string): Promise<void> {
    const started = this.#expect("s");
    const input = this.#child.stdio[3] as Writable;
    input.end(`${script}\0`);
    await started;
  }

  kill(): void {
    if (this.#alive) this.#child.kill("SIGKILL");
  }

  /** Runs `action` once the sandbox has ended (at once if it already has). */
  onExit(action: () => void): void {
    void this.exited.then(action);
  }

  #expect(marker: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        if (chunk.includes(marker)) {
          cleanup();
          resolve();
        }
      };
      const onClose = (): void => {
        cleanup();
        void this.exited.then(({ code }) =>
          reject(
            new Error(
              `bubblewrap sandbox ended before it was ${marker === "r" ? "ready" : "started"} (exit ${code}): ${this.#stderr.trim()}`,
            ),
          ),
        );
      };
      const cleanup = (): void => {
        this.#signals.off("data", onData);
        this.#signals.off("close", onClose);
      };
      this.#signals.on("data", onData);
      this.#signals.on("close", onClose);
    });
  }
}

/** The pids cgroup hierarchy (v1 `pids`, or v2 with the pids controller) if we may write it. */
function defaultPidsRoot(): string | undefined {
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

async function pidsCgroup(root: string, name: string, maxPids: number): Promise<string> {
  const dir = join(root, "shardworks", name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "pids.max"), String(maxPids));
  return dir;
}

async function removeCgroup(dir: string): Promise<void> {
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

/** bwrap's `--info-fd` JSON: the pid of the sandbox's first process (in its namespaces). */
function readInfoPid(stream: Readable): Promise<number> {
  // Listens without consuming to the end or destroying the stream: closing bwrap's info fd
  // early could fail it.
  return new Promise((resolve, reject) => {
    let text = "";
    const onData = (chunk: Buffer): void => {
      text += chunk.toString("utf8");
      const match = /"child-pid"\s*:\s*(\d+)/.exec(text);
      if (match) {
        stream.off("data", onData);
        stream.resume();
        resolve(Number(match[1]));
      }
    };
    stream.on("data", onData);
    stream.once("close", () => reject(new Error("bubblewrap did not report its child pid")));
  });
}

/**
 * Starts slirp4netns on the sandbox's network namespace: a user-mode NAT (10.0.2.0/24) with the
 * host's loopback NOT reachable (`--disable-host-loopback`) and an API socket for port forwards.
 * Resolves once the network is configured.
 */
async function startSlirp(binary: string, pid: number, apiSocket: string): Promise<ChildProcess> {
  const slirp = spawn(
    binary,
    [
      "--configure",
      "--mtu=65520",
      "--disable-host-loopback",
      "--ready-fd=3",
      "--api-socket",
      apiSocket,
      // By path: slirp4netns's pid mode setns()s in a way this kernel refuses (EPERM).
      "--netns-type=path",
      `/proc/${pid}/ns/net`,
      "tap0",
    ],
    { stdio: ["ignore", "ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  slirp.stderr?.on("data", (chunk: Buffer) => {
    if (stderr.length < 4096) stderr += chunk.toString("utf8");
  });
  const ready = new Promise<void>((resolve, reject) => {
    (slirp.stdio[3] as Readable).once("data", () => resolve());
    slirp.once("error", (error) =>
      reject(
        new Error(
          `cannot run slirp4netns "${binary}" (${error.message}); install Debian's slirp4netns`,
        ),
      ),
    );
    slirp.once("exit", (code) =>
      reject(new Error(`slirp4netns exited (${code}) before the network was up: ${stderr.trim()}`)),
    );
  });
  try {
    await ready;
  } catch (error) {
    slirp.kill("SIGKILL");
    throw error;
  }
  return slirp;
}

async function slirpForward(apiSocket: string, hostPort: number, guestPort: number): Promise<void> {
  const socket = createConnection(apiSocket);
  await once(socket, "connect");
  socket.end(
    JSON.stringify({
      execute: "add_hostfwd",
      arguments: {
        proto: "tcp",
        host_addr: "127.0.0.1",
        host_port: hostPort,
        guest_port: guestPort,
      },
    }),
  );
  let reply = "";
  for await (const chunk of socket) reply += (chunk as Buffer).toString("utf8");
  if (!reply.includes('"return"')) {
    throw new Error(
      `slirp4netns could not forward host port ${hostPort} (${reply.trim() || "no reply"}); is it in use on the host?`,
    );
  }
}

function signalNumber(signal: NodeJS.Signals): number | undefined {
  return osConstants.signals[signal];
}
