/**
 * One QEMU `microvm` process (its command line is `command-line.ts`): its QMP session and the guest agent's serial
 * protocol (see `guest-agent.sh`). The driver composes these into cold boots, snapshot restores,
 * warm pools and live migrations.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { mkdtemp, readdir, rename, rm, stat } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { setPriority, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { logger } from "../../../lib/logger";
import { shellQuote } from "../launch-script";
import { qemuArgs, withParentDeathSignal, type VmConfig } from "./command-line";
import { connectUnix, QmpClient } from "./qmp";
import { SerialLines } from "./serial-lines";

const log = logger.child({ component: "qemu-vm" });

/** The frame marker of the guest agent's protocol (ASCII record separator). */
const FRAME = "\x1e";
/** The longest serial line kept while waiting for its newline (characters). */
export const MAX_SERIAL_LINE = 4 * 1024 * 1024;

/** How a QEMU process ended. */
export interface VmGone {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The tail of QEMU's stderr (why it failed, if it did). */
  readonly stderr: string;
}

/**
 * Removes socket dirs (`$TMPDIR/swq-*`) that no QEMU listens on any more: QEMU dies with its node
 * agent (parent-death signal), but a killed agent cannot remove the dirs. Only dirs older than
 * `minAgeMs` are touched, so a QEMU still starting up is never swept.
 */
export async function sweepStaleSocketDirs(minAgeMs = 10 * 60_000): Promise<number> {
  let removed = 0;
  const names = await readdir(tmpdir()).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.startsWith("swq-"))) {
    const dir = join(tmpdir(), name);
    const info = await stat(dir).catch(() => undefined);
    if (!info?.isDirectory() || Date.now() - info.mtimeMs < minAgeMs) continue;
    const alive = await new Promise<boolean>((resolve) => {
      const socket = connect(join(dir, "qmp.sock"));
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (!alive) {
      await rm(dir, { recursive: true, force: true });
      removed++;
    }
  }
  return removed;
}

/** Why QEMU ended, from its stderr and the guest's last console lines (e.g. a kernel panic). */
export function explainGone(gone: VmGone, consoleTail: readonly string[]): string {
  const parts = [
    gone.stderr.trim(),
    consoleTail.length ? `guest console: ${consoleTail.join(" | ")}` : "",
  ];
  return parts.filter(Boolean).join("; ") || "no error output";
}

// QEMU runs `exec:` migration URIs through `/bin/sh`: quoted with the one shared quoter.
export { shellQuote };

/**
 * A running QEMU process. Emits `ready` (the agent waits for a command), `output` (one line of
 * the command's output), `exit` (the command's exit code) and `gone` ({@link VmGone}).
 */
export class QemuVm extends EventEmitter {
  readonly qmp: QmpClient;
  /** Settles when the QEMU process has ended. */
  readonly gone: Promise<VmGone>;
  readonly #child: ChildProcess;
  readonly #serial: Socket;
  readonly #socketDir: string;
  readonly #serialLines = new SerialLines(MAX_SERIAL_LINE, (dropped) =>
    log.warn(
      { pid: this.pid, dropped },
      `guest wrote more than ${MAX_SERIAL_LINE} characters without a newline on the serial console; dropped`,
    ),
  );
  #readyCount = 0;
  /** The guest's last console lines (kernel messages): they explain a failed boot or a panic. */
  readonly #console: string[] = [];

  private constructor(
    child: ChildProcess,
    qmp: QmpClient,
    serial: Socket,
    socketDir: string,
    gone: Promise<VmGone>,
  ) {
    super();
    this.#child = child;
    this.qmp = qmp;
    this.#serial = serial;
    this.#socketDir = socketDir;
    this.gone = gone;
    serial.setEncoding("latin1");
    serial.on("data", (chunk: string) => this.#onSerial(chunk));
    serial.on("error", () => undefined);
  }

  /** The QEMU process id. */
  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Whether the QEMU process still runs (a paused VM in a pool may have died meanwhile). */
  get alive(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** The guest's last console (kernel) lines, oldest first. */
  get consoleTail(): readonly string[] {
    return this.#console;
  }

  /** How many times the agent said it waits for a command (0 right after a restore). */
  get readyCount(): number {
    return this.#readyCount;
  }

  /** Starts QEMU and connects to its QMP socket and serial console. */
  static async launch(config: VmConfig): Promise<QemuVm> {
    // Unix socket paths are limited to 108 bytes, so they live in a short private dir, not workDir.
    const socketDir = await mkdtemp(join(tmpdir(), "swq-"));
    const qmpPath = join(socketDir, "qmp.sock");
    const serialPath = join(socketDir, "serial.sock");
    // setpriv --pdeathsig: QEMU dies with the node agent even on kill -9, so no guest outlives it.
    const args = qemuArgs(config, qmpPath, serialPath);
    const child = (await withParentDeathSignal())
      ? spawn("setpriv", ["--pdeathsig", "KILL", "--", config.binary, ...args], {
          stdio: ["ignore", "ignore", "pipe"],
        })
      : spawn(config.binary, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr?.on(
      "data",
      (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)),
    );
    const gone = new Promise<VmGone>((resolve) => {
      child.once("error", (error) => resolve({ code: null, signal: null, stderr: error.message }));
      child.once("exit", (code, signal) => resolve({ code, signal, stderr }));
    });
    if (child.pid !== undefined) {
      try {
        setPriority(child.pid, config.nice ?? 10);
      } catch {
        // Best effort: an unprivileged user may not change priorities on every system.
      }
    }
    const connectOrGone = async <T>(what: string, connecting: Promise<T>): Promise<T> => {
      const result = await Promise.race([connecting, gone]);
      if (result && typeof result === "object" && "stderr" in result && "signal" in result) {
        throw new Error(`QEMU exited before its ${what} socket came up: ${result.stderr.trim()}`);
      }
      return result;
    };
    try {
      const qmp = await connectOrGone("QMP", QmpClient.connect(qmpPath));
      const serial = await connectOrGone("serial", connectUnix(serialPath, 10_000));
      const vm = new QemuVm(child, qmp, serial, socketDir, gone);
      void gone.then((g) => vm.emit("gone", g));
      log.debug({ pid: child.pid, accel: config.accel, incoming: config.incoming }, "qemu started");
      return vm;
    } catch (error) {
      child.kill("SIGKILL");
      await gone;
      await rm(socketDir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Resolves at the agent's next (or a past, if `sinceCount` is lower) ready frame. */
  async waitReady(timeoutMs: number, sinceCount = 0): Promise<void> {
    if (this.#readyCount > sinceCount) return;
    await this.#waitFor("ready", timeoutMs, "the guest agent to come up");
  }

  /** Hands a shell script to the agent (it must be waiting for one). */
  sendCommand(script: string): void {
    this.#serial.write(`${FRAME}C${Buffer.from(script).toString("base64")}\n`);
  }

  /** On a VM started with `-incoming`: waits until the state has arrived, then the given run state. */
  async waitIncoming(
    timeoutMs: number,
    until: "paused" | "running" | "any" = "any",
  ): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { status } = await this.qmp.execute<{ status: string }>("query-status");
      if (status !== "inmigrate" && (until === "any" || status === until)) return status;
      if (status === "shutdown" || status === "internal-error" || status === "guest-panicked") {
        throw new Error(`incoming VM ended in state ${status}`);
      }
      if (Date.now() > deadline)
        throw new Error(`incoming VM still ${status} after ${timeoutMs} ms`);
      await sleep(10);
    }
  }

  /** Pauses the guest and writes its whole state to `file` (atomically: a partial file never shows). */
  async snapshotTo(file: string, timeoutMs = 60_000): Promise<void> {
    await this.qmp.execute("stop");
    await this.#tuneMigration();
    const partial = `${file}.${process.pid}.partial`;
    await this.qmp.execute("migrate", { uri: `exec:cat > ${shellQuote(partial)}` });
    try {
      await this.#waitMigration(timeoutMs);
      await rename(partial, file);
    } finally {
      await rm(partial, { force: true });
    }
  }

  /** Live-migrates the running guest to a QEMU listening on `tcp:host:port`; the guest ends paused here. */
  async migrateTo(host: string, port: number, timeoutMs = 120_000): Promise<void> {
    await this.#tuneMigration();
    await this.qmp.execute("migrate", { uri: `tcp:${host}:${port}` });
    await this.#waitMigration(timeoutMs);
  }

  /** Kills QEMU and removes its sockets. Idempotent. */
  async kill(): Promise<VmGone> {
    this.qmp.close();
    this.#serial.destroy();
    if (this.#child.exitCode === null && this.#child.signalCode === null)
      this.#child.kill("SIGKILL");
    const gone = await this.gone;
    await rm(this.#socketDir, { recursive: true, force: true });
    return gone;
  }

  async #tuneMigration(): Promise<void> {
    // QEMU's default bandwidth cap (128 MiB/s) only slows local snapshots and loopback migrations.
    await this.qmp.execute("migrate-set-parameters", { "max-bandwidth": 8 * 1024 ** 3 });
  }

  async #waitMigration(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const info = await this.qmp.execute<{ status?: string; "error-desc"?: string }>(
        "query-migrate",
      );
      if (info.status === "completed") return;
      if (info.status === "failed" || info.status === "cancelled") {
        throw new Error(
          `migration ${info.status}: ${info["error-desc"] ?? "no reason given by QEMU"}`,
        );
      }
      if (Date.now() > deadline) {
        await this.qmp.execute("migrate_cancel").catch(() => undefined);
        throw new Error(
          `migration did not complete within ${timeoutMs} ms (status ${info.status})`,
        );
      }
      await sleep(10);
    }
  }

  #waitFor(event: string, timeoutMs: number, what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.off(event, onEvent);
        this.off("gone", onGone);
      };
      const onEvent = () => {
        cleanup();
        resolve();
      };
      const onGone = (g: VmGone) => {
        cleanup();
        reject(
          new Error(
            `QEMU exited (code ${g.code}, signal ${g.signal}) while waiting for ${what}: ${explainGone(g, this.#console)}`,
          ),
        );
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.once(event, onEvent);
      this.once("gone", onGone);
    });
  }

  #onSerial(chunk: string): void {
    for (const line of this.#serialLines.push(chunk)) this.#onLine(line);
  }

  #onLine(line: string): void {
    const at = line.indexOf(FRAME);
    if (at < 0) {
      // Kernel messages share the console; they are not the command's output.
      if (line.trim()) {
        log.debug({ pid: this.pid, console: line }, "guest console");
        this.#console.push(line.trim());
        if (this.#console.length > 40) this.#console.shift();
      }
      return;
    }
    const kind = line[at + 1];
    const body = Buffer.from(line.slice(at + 2), "latin1").toString("utf8");
    if (kind === "R") {
      this.#readyCount++;
      this.emit("ready");
    } else if (kind === "O") this.emit("output", body);
    else if (kind === "X") this.emit("exit", Number.parseInt(body, 10));
  }
}
