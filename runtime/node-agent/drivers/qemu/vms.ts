/**
 * Where the qemu driver's VMs come from: the host (detected once: kernel, QEMU version,
 * accelerator), cold boots, the per-image snapshot files (taken once per key) and restores from
 * them. Everything here makes or saves a VM; the driver decides which one a sandbox gets.
 */
import { mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { logger } from "../../../lib/logger";
import { detectHost, type Host } from "./host";
import type { PreparedQemuImage } from "./images";
import { guestAgentFingerprint } from "./initramfs";
import type { QemuDriverOptions } from "./driver";
import type { VmConfig } from "./command-line";
import { QemuVm, shellQuote } from "./vm";

const log = logger.child({ component: "qemu-driver" });

/** The message of an error, with its causes, for errors that must explain themselves to a user. */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  return error.cause === undefined
    ? error.message
    : `${error.message}: ${describeError(error.cause)}`;
}

/** What {@link QemuVms} reads of the driver's options. */
export type QemuVmsOptions = Pick<
  QemuDriverOptions,
  "accel" | "kvmProbeTimeoutMs" | "bootTimeoutMs" | "nice"
> & {
  readonly binary: string;
  readonly cacheDir: string;
};

/** Cold boots, snapshots and restores of one driver, on the host it detects once. */
export class QemuVms {
  readonly #options: QemuVmsOptions;
  #host: Promise<Host> | undefined;
  /** Snapshots being written, by key: concurrent callers share the one write. */
  readonly #snapshots = new Map<string, Promise<string>>();

  constructor(options: QemuVmsOptions) {
    this.#options = options;
  }

  /** The host, detected once; a failed detection is forgotten by {@link forgetHost}. */
  host(): Promise<Host> {
    this.#host ??= detectHost({
      binary: this.#options.binary,
      cacheDir: this.#options.cacheDir,
      accel: this.#options.accel,
      kvmProbeTimeoutMs: this.#options.kvmProbeTimeoutMs,
      nice: this.#options.nice,
    });
    return this.#host;
  }

  /** Detect the host again next time (after a probe found it unusable). */
  forgetHost(): void {
    this.#host = undefined;
  }

  /** A new QEMU of `prepared` with `memoryMiB` of RAM, receiving `incoming` (a QEMU URI) if given. */
  async launch(prepared: PreparedQemuImage, memoryMiB: number, incoming?: string): Promise<QemuVm> {
    return QemuVm.launch({
      ...(await this.#vmConfig(prepared, memoryMiB)),
      ...(incoming === undefined ? {} : { incoming }),
    });
  }

  /**
   * The key of an image's snapshot: everything the saved state depends on (the image, the guest
   * agent, the kernel, the QEMU version, the accelerator and the RAM).
   */
  async snapshotKey(prepared: PreparedQemuImage, memoryMiB: number): Promise<string> {
    const host = await this.host();
    const digest = prepared.image.digest.replace(/[^A-Za-z0-9_.-]/g, "_");
    const agent = await guestAgentFingerprint();
    return `${digest}-${agent}-${host.kernel.packageName}-qemu${host.qemuVersion}-${host.accel}-${memoryMiB}m`.replace(
      /[^A-Za-z0-9_.-]/g,
      "_",
    );
  }

  /** The snapshot file of `key`, if it has been written. */
  async snapshotFile(key: string): Promise<string | undefined> {
    const file = this.#snapshotPath(key);
    return (await stat(file).then(
      (s) => s.isFile(),
      () => false,
    ))
      ? file
      : undefined;
  }

  /** Deletes the snapshot of `key` (one this QEMU cannot load), so the next cold start retakes it. */
  async dropSnapshot(key: string): Promise<void> {
    const file = await this.snapshotFile(key);
    if (file) await rm(file, { force: true });
  }

  /** Boots `prepared` and waits for the guest agent; kills the VM if it does not come up. */
  async bootCold(prepared: PreparedQemuImage, memoryMiB: number): Promise<QemuVm> {
    const vm = await this.launch(prepared, memoryMiB);
    try {
      await vm.waitReady(this.#options.bootTimeoutMs ?? 90_000);
      return vm;
    } catch (error) {
      await vm.kill();
      throw new Error(`cold boot of ${prepared.image.digest} failed: ${describeError(error)}`, {
        cause: error,
      });
    }
  }

  /** Cold boot; the first cold start of an image leaves a snapshot behind, so the next is warm. */
  async bootAndSnapshot(
    key: string,
    prepared: PreparedQemuImage,
    memoryMiB: number,
    image: string,
  ): Promise<QemuVm> {
    const vm = await this.bootCold(prepared, memoryMiB);
    try {
      await this.ensureSnapshot(key, prepared, memoryMiB, vm);
    } catch (error) {
      log.warn({ err: error, image }, "could not take the image's snapshot; starts stay cold");
    }
    return vm;
  }

  /**
   * Makes sure the image's snapshot exists. With `vm` (booted, agent ready), snapshots that VM and
   * leaves it paused for the caller to `cont`; without, boots a throwaway VM for it.
   */
  async ensureSnapshot(
    key: string,
    prepared: PreparedQemuImage,
    memoryMiB: number,
    vm?: QemuVm,
  ): Promise<string> {
    const existing = await this.snapshotFile(key);
    if (existing) return existing;
    let building = this.#snapshots.get(key);
    if (!building) {
      building = (async () => {
        const file = this.#snapshotPath(key);
        await mkdir(join(this.#options.cacheDir, "snapshots"), { recursive: true });
        const source = vm ?? (await this.bootCold(prepared, memoryMiB));
        try {
          const t0 = performance.now();
          await source.snapshotTo(file);
          log.info({ key, millis: Math.round(performance.now() - t0) }, "qemu snapshot written");
          return file;
        } finally {
          if (!vm) await source.kill();
        }
      })();
      this.#snapshots.set(key, building);
      building.finally(() => this.#snapshots.delete(key)).catch(() => undefined);
    }
    return building;
  }

  /** A new QEMU restored from the image's snapshot, paused (the caller sends `cont`). */
  async restore(key: string, prepared: PreparedQemuImage, memoryMiB: number): Promise<QemuVm> {
    const file = await this.snapshotFile(key);
    if (!file) throw new Error(`no snapshot for ${prepared.image.digest}`);
    return this.restoreFile(file, prepared, memoryMiB);
  }

  /** A new QEMU restored from `file` (a snapshot or a suspended sandbox), paused. */
  async restoreFile(file: string, prepared: PreparedQemuImage, memoryMiB: number): Promise<QemuVm> {
    const vm = await this.launch(prepared, memoryMiB, `exec:cat ${shellQuote(file)}`);
    try {
      await vm.waitIncoming(30_000);
      return vm;
    } catch (error) {
      await vm.kill();
      throw new Error(`restoring the snapshot ${file} failed; delete it to force a cold start`, {
        cause: error,
      });
    }
  }

  async #vmConfig(prepared: PreparedQemuImage, memoryMiB: number): Promise<VmConfig> {
    const host = await this.host();
    return {
      binary: this.#options.binary,
      kernel: host.kernel.path,
      initrd: prepared.initrd,
      accel: host.accel,
      memoryMiB,
      nice: this.#options.nice,
    };
  }

  #snapshotPath(key: string): string {
    return join(this.#options.cacheDir, "snapshots", `${key}.vmstate`);
  }
}
