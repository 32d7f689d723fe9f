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
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { constants as osConstants, tmpdir } from "node:os";
import { join } from "node:path";
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
}

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
  #stateDir: Promise<string> | undefined;
  #closed = false;

  constructor(options: ProcessDriverOptions = {}) {
    this.#images = options.images ?? new ImageStore(options.imageStore);
    this.#bwrap = options.bwrapPath ?? "bwrap";
    this.#busybox = options.busyboxPath ?? "/bin/busybox";
  }

  async probe(): Promise<ProbeResult> {
    await Promise.resolve();
    const bwrap = spawnSync(
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
      { stdio: ["ignore", "ignore", "pipe"], encoding: "utf8", timeout: 10_000 },
    );
    if (bwrap.error) {
      const code = (bwrap.error as NodeJS.ErrnoException).code;
      return {
        usable: false,
        reason: `cannot run bubblewrap "${this.#bwrap}" (${code ?? bwrap.error.message}); install Debian's bubblewrap`,
      };
    }
    if (bwrap.status !== 0) {
      const stderr = bwrap.stderr.trim();
      const reason = /busybox|No such file/.test(stderr)
        ? `the launcher ${this.#busybox} is missing; install Debian's busybox-static`
        : `bubblewrap cannot create namespaces here (${stderr || `exit ${bwrap.status}`})`;
      return { usable: false, reason };
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
          "network: none unless spec.network; ports are exposed only with network: true, on the host's loopback",
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
        "process driver: spec.ports needs spec.network: true (a sandbox without network has its own empty network namespace; with network the ports are on the host loopback)",
      );
    }
    const prepared = await this.#prepare(spec.image);
    const script = `exec 3<&-\n${launchScript(spec, prepared.config, { beforeExec: ["printf s >&4", "exec 4>&-"] })}`;
    let launcher = spec.network ? undefined : this.#takeWarm(spec.image);
    const start = launcher ? "warm" : "cold";
    launcher ??= await this.#launch(prepared, spec.network);
    const exit = launcher.attach(request.logFile);
    await launcher.start(script);
    if (start === "warm") {
      // Refill after the command started, so the refill's spawn is not on this start's path.
      this.#fill(spec.image, prepared).catch((error: unknown) =>
        log.warn({ err: error, image: spec.image }, "warm pool refill failed"),
      );
    }
    const endpoints: Record<string, string> = {};
    for (const port of spec.ports) endpoints[String(port)] = `127.0.0.1:${port}`;
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
      Array.from({ length: missing }, () => this.#launch(prepared, false)),
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
      return dir;
    })();
    return this.#stateDir;
  }

  /** Starts bwrap with the launcher waiting for its script; resolves once it is ready. */
  async #launch(prepared: PreparedImage, network: boolean): Promise<Launcher> {
    const state = await this.#state();
    const args = [
      "--unshare-all",
      ...(network ? ["--share-net"] : []),
      "--die-with-parent",
      "--new-session",
      "--cap-drop",
      "ALL",
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
      "--dev",
      "/dev",
      "--tmpfs",
      "/tmp",
      "--tmpfs",
      "/work",
      `${launcherDir}/busybox`,
      "sh",
      "-c",
      `printf r >&4; IFS= read -r -d "" script <&3; eval "$script"`,
    ];
    const child = spawn(this.#bwrap, args, { stdio: ["ignore", "pipe", "pipe", "pipe", "pipe"] });
    const launcher = new Launcher(child);
    this.#live.add(launcher);
    void launcher.exited.then(() => this.#live.delete(launcher));
    if (this.#closed) launcher.kill();
    await launcher.ready;
    return launcher;
  }
}

/**
 * Every bwrap this process started and that still runs. bwrap's --die-with-parent kills the
 * sandbox when we die, but a bwrap caught mid-setup can outlive us; killing them on exit is cheap.
 */
const allLaunchers = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of allLaunchers) child.kill("SIGKILL");
});

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
    allLaunchers.add(child);
    child.once("exit", () => allLaunchers.delete(child));
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

function signalNumber(signal: NodeJS.Signals): number | undefined {
  return osConstants.signals[signal];
}
