/** One Firecracker process (jailed or not): its API, its serial console and its exit. */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import { link, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { logger } from "../../../lib/logger";
import type { SandboxExit } from "../../driver";
import { FirecrackerApi } from "./api";
import type { FirecrackerDriverOptions } from "./driver";
import { findExecutable } from "./host";

const log = logger.child({ component: "firecracker-driver" });

/**
 * Starts a Firecracker process (jailed if configured) and waits for its API socket. The process
 * is in `vmms` until it exits (the driver kills what is left on close).
 */
export async function startVmm(
  options: Pick<FirecrackerDriverOptions, "firecrackerPath" | "jailer">,
  workDir: string,
  logFile: string,
  vmms: Set<ChildProcess>,
): Promise<Vmm> {
  const id = `sw-${randomBytes(6).toString("hex")}`;
  const firecracker = findExecutable(options.firecrackerPath ?? "firecracker") ?? "firecracker";
  const jailer = options.jailer;
  let child: ChildProcess;
  let socket: string;
  let root: string | undefined;
  if (jailer) {
    root = join(jailer.chrootBaseDir, "firecracker", id, "root");
    socket = join(root, "run", "firecracker.socket");
    const args = [
      "--id",
      id,
      "--exec-file",
      firecracker,
      "--uid",
      String(jailer.uid),
      "--gid",
      String(jailer.gid),
    ];
    args.push(
      "--chroot-base-dir",
      jailer.chrootBaseDir,
      "--",
      "--api-sock",
      "/run/firecracker.socket",
    );
    child = spawn(jailer.path ?? "jailer", args, { stdio: ["pipe", "pipe", "pipe"] });
  } else {
    socket = join(workDir, `${id}.socket`);
    child = spawn(firecracker, ["--api-sock", socket, "--id", id], {
      stdio: ["pipe", "pipe", "pipe"],
    });
  }
  vmms.add(child);
  const vm = new Vmm(child, new FirecrackerApi(socket), logFile, root);
  void vm.exit.then(() => vmms.delete(child));
  for (let attempt = 0; attempt < 200 && !existsSync(socket); attempt += 1) {
    if (child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  if (!existsSync(socket)) {
    vm.kill();
    throw new Error(`firecracker did not open its API socket ${socket} within 2 s`);
  }
  log.debug({ id, socket }, "firecracker started");
  return vm;
}

/** One Firecracker process: its API, its serial console and its exit. */
export class Vmm {
  readonly exit: Promise<SandboxExit>;
  readonly #child: ChildProcess;
  readonly #jailRoot: string | undefined;
  readonly #seen = new Set<string>();
  readonly #waiters = new Map<string, () => void>();

  constructor(
    child: ChildProcess,
    readonly api: FirecrackerApi,
    logFile: string,
    jailRoot: string | undefined,
  ) {
    this.#child = child;
    this.#jailRoot = jailRoot;
    const out = createWriteStream(logFile, { flags: "a" });
    let code: number | undefined;
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      const exit = /^SHARDWORKS_EXIT=([0-9]+)/.exec(line.trim());
      if (exit) code = Number(exit[1]);
      else if (/^SHARDWORKS_(READY|STARTED)/.test(line.trim())) this.#mark(line.trim());
      else out.write(`${line}\n`);
    });
    child.stderr?.pipe(out, { end: false });
    this.exit = new Promise((resolve) => {
      child.once("error", (error) =>
        resolve({ kind: "failed", reason: `firecracker could not start: ${error.message}` }),
      );
      child.once("close", (status, signal) => {
        out.end();
        if (code !== undefined) resolve({ kind: "exited", code });
        else
          resolve({
            kind: "failed",
            reason: `the microVM ended without an exit code (firecracker ${signal ?? `exit ${status}`})`,
          });
      });
    });
  }

  /** Resolves when the guest agent prints `marker` on the serial console. */
  marker(marker: string): Promise<void> {
    if (this.#seen.has(marker)) return Promise.resolve();
    return Promise.race([
      new Promise<void>((resolve) => this.#waiters.set(marker, resolve)),
      this.exit.then((exit) => {
        throw new Error(`the microVM ended before ${marker}: ${JSON.stringify(exit)}`);
      }),
    ]);
  }

  send(text: string): void {
    this.#child.stdin?.write(text);
  }

  kill(): void {
    if (this.#child.exitCode === null && this.#child.signalCode === null)
      this.#child.kill("SIGKILL");
  }

  /** Makes a host file visible to the VMM: hard-linked into the jail when jailed. Returns its path for the API. */
  async expose(hostPath: string): Promise<string> {
    if (!this.#jailRoot) return hostPath;
    const name = `${randomBytes(4).toString("hex")}-${hostPath.split("/").pop() ?? "file"}`;
    await mkdir(this.#jailRoot, { recursive: true });
    await link(hostPath, join(this.#jailRoot, name));
    return `/${name}`;
  }

  /** The path the VMM should write `hostPath` to (snapshots), relative to the jail when jailed. */
  async inside(hostPath: string): Promise<string> {
    await Promise.resolve();
    return this.#jailRoot ? `/${hostPath.split("/").pop() ?? "file"}` : hostPath;
  }

  #mark(marker: string): void {
    this.#seen.add(marker);
    this.#waiters.get(marker)?.();
  }
}
