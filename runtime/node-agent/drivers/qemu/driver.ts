/**
 * The `qemu` sandbox driver: every sandbox is a QEMU `microvm` guest (hardware-isolated with KVM;
 * emulated with TCG where KVM is unusable, as on the machines this was built on). Cold start = boot
 * the Debian cloud kernel with an initramfs of the image plus the guest agent; warm start = restore
 * a per-image snapshot taken where the agent waits for a command (or take an already restored,
 * paused VM from the pool); live migration = QEMU's own migration over TCP.
 *
 * The driver keeps the sandboxes and the pool; `vms.ts` makes the VMs (boots, snapshots, restores).
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { logger } from "../../../lib/logger";
import { Driver, registryAccessOf, type RegistryAccess } from "../../../../contract/model";
import { freePort } from "../../../lib/ports";
import { preparedImageKey } from "../../images";
import type {
  DriverCapabilities,
  MigratingDriver,
  MigrationTarget,
  ProbeResult,
  RunningSandbox,
  RunRequest,
} from "../../driver";
import { WarmPool } from "../warm-pool";
import type { Accelerator } from "./command-line";
import { commandScript } from "./guest-command";
import { guestMemoryFor, type PreparedQemuImage, type QemuImageSource } from "./images";
import { ensureInitramfs } from "./initramfs";
import { shardworksCacheDir } from "./kernel";
import { QemuSandbox } from "./sandbox";
import type { QemuVm } from "./vm";
import { describeError, QemuVms } from "./vms";

const log = logger.child({ component: "qemu-driver" });

/** Options of {@link QemuDriver}. */
export interface QemuDriverOptions {
  /** Where images come from (the image store). */
  readonly images: QemuImageSource;
  /** QEMU binary; default `$SHARDWORKS_QEMU` or `qemu-system-x86_64`. */
  readonly binary?: string;
  /** Cache root for initramfs archives, snapshots and the KVM probe; default `~/.cache/shardworks/qemu`. */
  readonly cacheDir?: string;
  /** `auto` probes KVM once per host and falls back to TCG; default `$SHARDWORKS_QEMU_ACCEL` or `auto`. */
  readonly accel?: Accelerator | "auto";
  /** How long the KVM probe boot may take before KVM counts as unusable; default 8000 ms. */
  readonly kvmProbeTimeoutMs?: number;
  /** Cold boot timeout, kernel start to agent ready; default 90 s (TCG on a busy host is slow). */
  readonly bootTimeoutMs?: number;
  /** Address incoming live migrations listen on; default `127.0.0.1`. */
  readonly migrationListenHost?: string;
  /** How long an accepted migration waits for the source; default 120 s. */
  readonly migrationTimeoutMs?: number;
  /** Niceness of QEMU processes; default 10. */
  readonly nice?: number;
}

/** The qemu driver; see the module comment. */
export class QemuDriver implements MigratingDriver {
  readonly name = Driver.Qemu;
  readonly #options: QemuDriverOptions;
  readonly #cacheDir: string;
  readonly #vms: QemuVms;
  readonly #images = new Map<string, Promise<PreparedQemuImage>>();
  /** Paused VMs restored from a snapshot, per snapshot key, filled one VM at a time. */
  readonly #pool = new WarmPool<QemuVm>({
    discard: async (vm) => {
      await vm.kill();
    },
    alive: (vm) => vm.alive,
    oneAtATime: true,
  });
  readonly #sandboxes = new Map<string, QemuSandbox>();
  readonly #incoming = new Set<QemuVm>();

  constructor(options: QemuDriverOptions) {
    this.#options = options;
    this.#cacheDir = options.cacheDir ?? join(shardworksCacheDir(), "qemu");
    this.#vms = new QemuVms({
      binary: options.binary ?? process.env.SHARDWORKS_QEMU ?? "qemu-system-x86_64",
      cacheDir: this.#cacheDir,
      accel: options.accel,
      kvmProbeTimeoutMs: options.kvmProbeTimeoutMs,
      bootTimeoutMs: options.bootTimeoutMs,
      nice: options.nice,
    });
  }

  async probe(): Promise<ProbeResult> {
    try {
      const host = await this.#vms.host();
      const capabilities: DriverCapabilities = {
        driver: Driver.Qemu,
        hardwareIsolated: true,
        warmStart: "snapshot",
        snapshots: true,
        liveMigration: true,
        notes: host.notes,
      };
      return { usable: true, capabilities };
    } catch (error) {
      this.#vms.forgetHost();
      return { usable: false, reason: error instanceof Error ? error.message : String(error) };
    }
  }

  async prepare(image: string, access?: RegistryAccess): Promise<void> {
    await this.#prepare(image, access);
  }

  async warm(image: string, count: number, access?: RegistryAccess): Promise<void> {
    // Pools are keyed by the digest the image resolved to under `access` (content, not name).
    const prepared = await this.#prepare(image, access);
    // The memory a default-sized sandbox of this image gets, so the snapshot serves its runs.
    const memoryMiB = prepared.minMemoryMiB;
    const key = await this.#vms.snapshotKey(prepared, memoryMiB);
    // Release (count 0): the paused VMs go (their memory with them); the snapshot file stays on disk.
    if (count > 0) await this.#vms.ensureSnapshot(key, prepared, memoryMiB);
    await this.#pool
      .setTarget(key, count, () => this.#vms.restore(key, prepared, memoryMiB))
      .catch((error: unknown) => log.warn({ err: error, key }, "could not refill the warm pool"));
  }

  /** Paused VMs waiting in the warm pools (all images). */
  pooled(): number {
    return this.#pool.size();
  }

  async run(request: RunRequest): Promise<RunningSandbox> {
    const startedAt = performance.now();
    const { spec } = request;
    if (spec.network || spec.ports.length > 0) {
      throw new Error(
        "spec.network/spec.ports: the qemu driver gives guests no network (the initramfs root loads no virtio-net module); " +
          "drop them or ask for driver 'process'",
      );
    }
    if (this.#sandboxes.has(request.id))
      throw new Error(`sandbox ${request.id} is already running here`);
    const prepared = await this.#prepare(spec.image, registryAccessOf(spec));
    commandScript(spec, prepared.image); // validates the spec before any VM starts
    const memoryMiB = Math.max(spec.resources.memoryMiB, prepared.minMemoryMiB);
    const key = await this.#vms.snapshotKey(prepared, memoryMiB);

    let vm: QemuVm;
    let start: "warm" | "cold" = "warm";
    const pooled = this.#pool.take(key);
    if (pooled) {
      vm = pooled;
      this.#pool
        .refill(key, () => this.#vms.restore(key, prepared, memoryMiB))
        .catch((error: unknown) => log.warn({ err: error, key }, "could not refill the warm pool"));
    } else if (await this.#vms.snapshotFile(key)) {
      vm = await this.#vms.restore(key, prepared, memoryMiB).catch(async (error: unknown) => {
        // A snapshot this QEMU cannot load is useless: drop it and start cold (which retakes it).
        log.warn({ err: error, image: spec.image }, "snapshot restore failed; starting cold");
        await this.#vms.dropSnapshot(key);
        start = "cold";
        return this.#vms.bootAndSnapshot(key, prepared, memoryMiB, spec.image);
      });
    } else {
      start = "cold";
      vm = await this.#vms.bootAndSnapshot(key, prepared, memoryMiB, spec.image);
    }
    try {
      await vm.qmp.execute("cont");
    } catch (error) {
      await vm.kill();
      throw new Error(`cannot resume the VM of sandbox ${request.id}`, { cause: error });
    }
    const sandbox: QemuSandbox = new QemuSandbox(request.id, vm, start, 0, request.logFile, () =>
      this.#forget(request.id, sandbox),
    );
    this.#sandboxes.set(request.id, sandbox);
    vm.sendCommand(commandScript(spec, prepared.image, Date.now()));
    sandbox.startMillis = performance.now() - startedAt;
    log.info(
      { id: request.id, start, startMillis: Math.round(sandbox.startMillis), pid: vm.pid },
      "qemu sandbox started",
    );
    return sandbox;
  }

  async acceptMigration(
    request: RunRequest,
  ): Promise<{ port: number; sandbox: Promise<RunningSandbox> }> {
    const startedAt = performance.now();
    const prepared = await this.#prepare(request.spec.image, registryAccessOf(request.spec));
    const memoryMiB = Math.max(request.spec.resources.memoryMiB, prepared.minMemoryMiB);
    const listenHost = this.#options.migrationListenHost ?? "127.0.0.1";
    const port = await freePort();
    const vm = await this.#vms.launch(prepared, memoryMiB, `tcp:${listenHost}:${port}`);
    this.#incoming.add(vm);
    // Attached before the state arrives: the guest resumes on its own when migration completes,
    // and its first output lines must reach the log.
    const running = new QemuSandbox(request.id, vm, "warm", 0, request.logFile, () =>
      this.#forget(request.id, running),
    );
    const sandbox = (async () => {
      try {
        await vm.waitIncoming(this.#options.migrationTimeoutMs ?? 120_000, "running");
      } catch (error) {
        await running.stop();
        throw new Error(
          `incoming migration of sandbox ${request.id} failed: ${describeError(error)}`,
          {
            cause: error,
          },
        );
      } finally {
        this.#incoming.delete(vm);
      }
      running.startMillis = performance.now() - startedAt;
      this.#sandboxes.set(request.id, running);
      return running as RunningSandbox;
    })();
    // The caller may never await `sandbox` if the source fails; the rejection is theirs to see.
    sandbox.catch(() => undefined);
    return { port, sandbox };
  }

  async migrate(id: string, target: MigrationTarget): Promise<void> {
    const sandbox = this.#sandboxes.get(id);
    if (!sandbox) throw new Error(`sandbox ${id} is not running on this node; nothing to migrate`);
    await sandbox.migrate(target);
  }

  /**
   * Saves a running sandbox's whole guest state (its command mid-run included) to `file` and stops
   * it here; {@link resume} continues it. The sandbox's `exit` settles as failed, "suspended to …".
   */
  async suspend(id: string, file: string): Promise<void> {
    const sandbox = this.#sandboxes.get(id);
    if (!sandbox) throw new Error(`sandbox ${id} is not running on this node; nothing to suspend`);
    await sandbox.suspend(file);
  }

  /** Continues a sandbox from a file written by {@link suspend}, for the same image and resources. */
  async resume(request: RunRequest, file: string): Promise<RunningSandbox> {
    const startedAt = performance.now();
    if (this.#sandboxes.has(request.id))
      throw new Error(`sandbox ${request.id} is already running here`);
    const prepared = await this.#prepare(request.spec.image, registryAccessOf(request.spec));
    const memoryMiB = Math.max(request.spec.resources.memoryMiB, prepared.minMemoryMiB);
    const vm = await this.#vms.restoreFile(file, prepared, memoryMiB);
    const sandbox: QemuSandbox = new QemuSandbox(request.id, vm, "warm", 0, request.logFile, () =>
      this.#forget(request.id, sandbox),
    );
    this.#sandboxes.set(request.id, sandbox);
    try {
      await vm.qmp.execute("cont");
    } catch (error) {
      await sandbox.stop();
      throw new Error(`cannot resume the VM of sandbox ${request.id}`, { cause: error });
    }
    sandbox.startMillis = performance.now() - startedAt;
    return sandbox;
  }

  async close(): Promise<void> {
    await Promise.all([
      this.#pool.close(),
      ...[...this.#incoming].map((vm) => vm.kill()),
      ...[...this.#sandboxes.values()].map((s) => s.stop()),
    ]);
  }

  #forget(id: string, sandbox: QemuSandbox): void {
    if (this.#sandboxes.get(id) === sandbox) this.#sandboxes.delete(id);
  }

  #prepare(image: string, access?: RegistryAccess): Promise<PreparedQemuImage> {
    const key = preparedImageKey(image, access);
    let prepared = this.#images.get(key);
    if (!prepared) {
      prepared = (async () => {
        await this.#vms.host();
        const resolved = await this.#options.images.resolve(image, access);
        const initrd = await ensureInitramfs({
          rootfs: resolved.rootfs,
          key: resolved.digest,
          cacheDir: join(this.#cacheDir, "initramfs"),
        });
        return { image: resolved, initrd, minMemoryMiB: guestMemoryFor((await stat(initrd)).size) };
      })();
      this.#images.set(key, prepared);
      // A failure is not cached: the next call retries (the image may appear later).
      prepared.catch(() => this.#images.delete(key));
    }
    return prepared;
  }
}
