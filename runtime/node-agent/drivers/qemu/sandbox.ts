/** One running qemu sandbox: its VM, its log, and how it stops, migrates or suspends. */
import { createWriteStream, type WriteStream } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { logger } from "../../../lib/logger";
import type { MigrationTarget, RunningSandbox, SandboxExit } from "../../driver";
import { explainGone, type QemuVm } from "./vm";

const log = logger.child({ component: "qemu-driver" });

/** A sandbox backed by a VM, with what it takes to stop or move it. */
export class QemuSandbox implements RunningSandbox {
  readonly endpoints: Readonly<Record<string, string>> = {};
  readonly exit: Promise<SandboxExit>;
  #resolveExit!: (exit: SandboxExit) => void;
  #done = false;
  #log: WriteStream;
  #onClosed: () => void;

  constructor(
    readonly id: string,
    readonly vm: QemuVm,
    readonly start: "warm" | "cold",
    public startMillis: number,
    logFile: string,
    onClosed: () => void,
  ) {
    this.exit = new Promise((resolve) => (this.#resolveExit = resolve));
    this.#onClosed = onClosed;
    this.#log = createWriteStream(logFile, { flags: "a" });
    this.#log.on("error", (error) => log.warn({ err: error, id }, "cannot write sandbox log"));
    vm.on("output", (line: string) => this.#log.write(`${line}\n`));
    vm.on("exit", (code: number) => void this.#finish({ kind: "exited", code }));
    void vm.gone.then((gone) =>
      this.#finish({
        kind: "failed",
        reason: `QEMU exited (code ${gone.code}, signal ${gone.signal}) before the command finished: ${explainGone(gone, vm.consoleTail)}`,
      }),
    );
  }

  stop(): Promise<void> {
    return this.#finish({ kind: "failed", reason: "stopped" });
  }

  /** Live-migrates to a target that accepted the migration; this side then ends. */
  async migrate(target: MigrationTarget): Promise<void> {
    if (this.#done) throw new Error(`sandbox ${this.id} is not running; nothing to migrate`);
    await this.vm.migrateTo(target.host, target.port);
    // The guest is paused here now; let the serial bytes already sent reach the log.
    await sleep(100);
    await this.#finish({ kind: "failed", reason: `migrated to ${target.host}:${target.port}` });
  }

  /** Pauses the guest, writes its whole state to `file`, then ends this side. */
  async suspend(file: string): Promise<void> {
    if (this.#done) throw new Error(`sandbox ${this.id} is not running; nothing to suspend`);
    await this.vm.snapshotTo(file);
    await sleep(100);
    await this.#finish({ kind: "failed", reason: `suspended to ${file}` });
  }

  async #finish(exit: SandboxExit): Promise<void> {
    if (this.#done) return this.exit.then(() => undefined);
    this.#done = true;
    this.vm.removeAllListeners("output");
    this.vm.removeAllListeners("exit");
    await this.vm.kill();
    await new Promise<void>((resolve) => this.#log.end(resolve));
    this.#onClosed();
    this.#resolveExit(exit);
  }
}
