/** One bwrap process running the launcher (the tiny shell that execs the sandbox's command). */
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { constants as osConstants } from "node:os";
import type { Readable, Writable } from "node:stream";
import type { SandboxExit } from "../../driver";

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
export class Launcher {
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

/** bwrap's `--info-fd` JSON: the pid of the sandbox's first process (in its namespaces). */
export function readInfoPid(stream: Readable): Promise<number> {
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

function signalNumber(signal: NodeJS.Signals): number | undefined {
  return osConstants.signals[signal];
}
