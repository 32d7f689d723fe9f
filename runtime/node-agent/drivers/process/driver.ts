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
import { closeSync, existsSync, openSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { logger } from "../../../lib/logger";
import { Driver, registryAccessOf, type RegistryAccess } from "../../../../contract/model";
import type { ProbeResult, RunRequest, RunningSandbox, SandboxDriver } from "../../driver";
import { ImageStore, preparedImageKey, type PreparedImage } from "../../images";
import { launchScript } from "../launch-script";
import { launcherArgs, spawnInCgroups } from "./bwrap";
import { Launcher, readInfoPid } from "./launcher";
import { sandboxCgroupRoots, unlimitedOptOut } from "./cgroup-hierarchy";
import { meminfoFor } from "./meminfo";
import {
  checkCgroupRoot,
  createSandboxCgroups,
  removeCgroup,
  removeLeftoverCgroups,
} from "./sandbox-cgroups";
import {
  checkHostPorts,
  defaultHostPorts,
  type HostPortRange,
  type ProcessDriverOptions,
} from "./options";
import { seccompFilter } from "./seccomp";
import { probeProcessDriver } from "./probe";
import { slirpForward, startSlirp } from "./slirp";
import { WarmPool } from "../warm-pool";

const log = logger.child({ component: "process-driver" });
/** Launchers started by this process, all drivers together (see `#launch`). */
let launched = 0;

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
  /** Warm launchers (network off) per image. */
  readonly #pool = new WarmPool<Launcher>({
    discard: (launcher) => launcher.kill(),
    alive: (launcher) => launcher.alive,
  });
  readonly #live = new Set<Launcher>();
  readonly #slirp: string;
  readonly #maxPids: number;
  readonly #pidsRoot: string | undefined;
  readonly #memoryRoot: string | undefined;
  /** Why there is no pids or no memory hierarchy (then not usable unless `#unlimited`). */
  readonly #cgroupGaps: readonly string[];
  /** SHARDWORKS_PROCESS_UNLIMITED=1: run without them (development hosts only). */
  readonly #unlimited: boolean;
  readonly #hostPorts: HostPortRange;
  /** Host ports forwarded to a live sandbox now (slirp4netns refuses a taken one anyway). */
  readonly #usedHostPorts = new Set<number>();
  readonly #seccomp: boolean;
  readonly #python: string;
  readonly #warmMemoryMiB: number;
  #stateDir: Promise<string> | undefined;
  #closed = false;
  readonly #cleanups = new Set<Promise<void>>();

  constructor(options: ProcessDriverOptions = {}) {
    this.#images = options.images ?? new ImageStore(options.imageStore);
    this.#bwrap = options.bwrapPath ?? "bwrap";
    this.#busybox = options.busyboxPath ?? "/bin/busybox";
    this.#slirp = options.slirp4netnsPath ?? "slirp4netns";
    this.#maxPids = options.maxPids ?? 256;
    const cgroupRoots = sandboxCgroupRoots({
      pids: options.pidsCgroupRoot,
      memory: options.memoryCgroupRoot,
    });
    this.#pidsRoot = cgroupRoots.pids;
    this.#memoryRoot = cgroupRoots.memory;
    this.#cgroupGaps = cgroupRoots.gaps;
    this.#unlimited = unlimitedOptOut();
    this.#hostPorts = checkHostPorts(options.hostPorts ?? defaultHostPorts());
    this.#seccomp = options.seccomp ?? true;
    this.#python = options.python ?? "/usr/bin/python3";
    this.#warmMemoryMiB = options.warmMemoryMiB ?? 128;
  }

  async probe(): Promise<ProbeResult> {
    // Empty cgroups of agents that are gone (a crash) would stay forever: remove them.
    for (const root of new Set([this.#pidsRoot, this.#memoryRoot])) {
      if (root !== undefined) await removeLeftoverCgroups(root);
    }
    // A hierarchy we would put sandboxes in but cannot fails every run: not usable, and why.
    try {
      if (this.#pidsRoot) await checkCgroupRoot(this.#pidsRoot, "pids");
      if (this.#memoryRoot) await checkCgroupRoot(this.#memoryRoot, "memory");
    } catch (error) {
      return { usable: false, reason: (error as Error).message };
    }
    return probeProcessDriver({
      bwrap: this.#bwrap,
      busybox: this.#busybox,
      seccomp: this.#seccomp,
      python: this.#python,
      hostPorts: this.#hostPorts,
      maxPids: this.#pidsRoot === undefined ? undefined : this.#maxPids,
      memoryCgroup: this.#memoryRoot !== undefined,
      cgroupGaps: this.#cgroupGaps,
      unlimited: this.#unlimited,
    });
  }

  async prepare(image: string, access?: RegistryAccess): Promise<void> {
    await this.#prepare(image, access);
  }

  async warm(image: string, count: number, access?: RegistryAccess): Promise<void> {
    const prepared = await this.#prepare(image, access);
    // Pooled per access: a launcher warmed for the platform never serves a shard's sandbox.
    await this.#pool.setTarget(preparedImageKey(image, access), count, () =>
      this.#launchWarm(prepared),
    );
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
    const access = registryAccessOf(spec);
    const prepared = await this.#prepare(spec.image, access);
    const poolKey = preparedImageKey(spec.image, access);
    const script = `exec 3<&-\n${launchScript(spec, prepared.config, { beforeExec: ["printf s >&4", "exec 4>&-"] })}`;
    // Warm launchers have the network, memory cgroup, tmpfs sizes and /proc/meminfo of the
    // default sandbox: only a sandbox with exactly that memory limit may take one.
    const warmable = !spec.network && spec.resources.memoryMiB === this.#warmMemoryMiB;
    let launcher = warmable ? this.#pool.take(poolKey) : undefined;
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
      this.#pool
        .refill(poolKey, () => this.#launchWarm(prepared))
        .catch((error: unknown) =>
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
    await this.#pool.close();
    const live = [...this.#live];
    for (const launcher of live) launcher.kill();
    await Promise.all(live.map((l) => l.exited));
    await Promise.allSettled([...this.#cleanups]);
    const state = this.#stateDir;
    this.#stateDir = undefined;
    if (state) await rm(await state, { recursive: true, force: true });
  }

  #prepare(image: string, access?: RegistryAccess): Promise<PreparedImage> {
    const key = preparedImageKey(image, access);
    let pending = this.#prepared.get(key);
    if (!pending) {
      pending = this.#images.prepare(image, access);
      this.#prepared.set(key, pending);
      // A failed prepare is not cached: the next call tries again.
      pending.catch(() => this.#prepared.delete(key));
    }
    return pending;
  }

  /** A launcher for the warm pool: network, memory limit, tmpfs and meminfo of the default sandbox. */
  #launchWarm(prepared: PreparedImage): Promise<Launcher> {
    return this.#launch(prepared, { network: false, memoryMiB: this.#warmMemoryMiB });
  }

  async #state(): Promise<string> {
    this.#stateDir ??= (async () => {
      const dir = await mkdtemp(join(tmpdir(), "shardworks-process-"));
      await mkdir(join(dir, "launcher"));
      await copyFile(this.#busybox, join(dir, "launcher", "busybox"));
      if (this.#seccomp)
        await writeFile(join(dir, "seccomp.bpf"), await seccompFilter(this.#python));
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
    launched += 1;
    // Names the launch's files in the state directory (its cgroups get random names of their own).
    const name = `${process.pid}-${launched}`;
    const meminfo = join(state, `meminfo-${memoryMiB}`);
    if (!existsSync(meminfo)) await writeFile(meminfo, meminfoFor(memoryMiB));
    // Each tmpfs gets half the memory limit. Their pages are charged to the sandbox's memory
    // cgroup, which caps them all together; the size makes one full file system fail a write with
    // ENOSPC rather than reach the cgroup's OOM killer (and bounds each of them without a cgroup).
    const tmpfsBytes = String(Math.max(1, Math.floor(memoryMiB / 2)) * 1024 * 1024);
    const cgroups = await this.#cgroups(memoryMiB);
    const args = launcherArgs({
      rootfs: prepared.rootfs,
      state,
      meminfo,
      tmpfsBytes,
      seccomp: this.#seccomp,
    });
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
    const child = spawnInCgroups(cgroups, this.#bwrap, args, stdio);
    if (filter !== undefined) closeSync(filter);
    const launcher = new Launcher(child);
    this.#live.add(launcher);
    const cleanup = launcher.exited.then(async () => {
      this.#live.delete(launcher);
      await Promise.all(cgroups.map(removeCgroup));
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
   * The new cgroups a sandbox joins (one directory per hierarchy: two with cgroup v1, one with
   * v2, named at random): its pids cap and its memory limit, where this host has a hierarchy for
   * them. A hierarchy we have but cannot use fails the launch (never a sandbox without the limit).
   */
  #cgroups(memoryMiB: number): Promise<string[]> {
    return createSandboxCgroups({
      pids:
        this.#pidsRoot === undefined ? undefined : { root: this.#pidsRoot, maxPids: this.#maxPids },
      memory: this.#memoryRoot === undefined ? undefined : { root: this.#memoryRoot, memoryMiB },
    });
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
  /** The sandbox's memory limit: its memory cgroup, its tmpfs sizes and its /proc/meminfo. */
  readonly memoryMiB: number;
  readonly ports?: readonly number[];
  /** Filled with guest port → host port as ports are forwarded. */
  readonly forwarded?: Map<number, number>;
}
