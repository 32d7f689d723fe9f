/**
 * The `qemu` sandbox driver: every sandbox is a QEMU `microvm` guest (hardware-isolated with KVM;
 * emulated with TCG where KVM is unusable, as on the machines this was built on). Cold start = boot
 * the Debian cloud kernel with an initramfs of the image plus the guest agent; warm start = restore
 * a per-image snapshot taken where the agent waits for a command (or take an already restored,
 * paused VM from the pool); live migration = QEMU's own migration over TCP.
 */
import { mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { logger } from "../../../lib/logger";
import {
  Driver,
  registryAccessOf,
  type RegistryAccess,
  type SandboxSpec,
} from "../../../lib/model";
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
import { detectHost, MIN_MEMORY_MIB, type Host } from "./host";
import { ensureInitramfs, guestAgentFingerprint } from "./initramfs";
import { shardworksCacheDir } from "./kernel";
import { QemuSandbox } from "./sandbox";
import { QemuVm, shellQuote, type Accelerator, type VmConfig } from "./vm";

const log = logger.child({ component: "qemu-driver" });

/** An image as the qemu driver needs it: an unpacked root filesystem and its identity. */
export interface QemuImage {
  /** Content digest (`sha256:…`): the key of every cache (initramfs, snapshot). */
  readonly digest: string;
  /** The unpacked root filesystem directory. */
  readonly rootfs: string;
  /** The image config's environment (`KEY` → value); the sandbox's env overrides it. */
  readonly env?: Readonly<Record<string, string>>;
  /** The image config's working directory. */
  readonly workingDir?: string;
}

/** Turns an image reference into a root filesystem (the node agent's image store). */
export interface QemuImageSource {
  resolve(image: string, access?: RegistryAccess): Promise<QemuImage>;
}

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

/** The message of an error, with its causes, for errors that must explain themselves to a user. */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  return error.cause === undefined ? error.message : `${error.message}: ${describe(error.cause)}`;
}

/** The smallest guest RAM the cloud kernel plus an initramfs root boots reliably in. */
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const envKeySchema = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
  message: "must be a shell variable name (letters, digits, '_', not starting with a digit)",
});

/** The shell script the guest agent runs: the environment, the working directory, then the command. */
export function commandScript(spec: SandboxSpec, image: QemuImage, nowMillis?: number): string {
  for (const key of Object.keys(spec.env)) {
    const parsed = envKeySchema.safeParse(key);
    if (!parsed.success) {
      throw new Error(
        `spec.env.${key}: ${parsed.error.issues[0]?.message ?? "invalid"}; rename the variable`,
      );
    }
  }
  const env: Record<string, string> = {
    PATH: DEFAULT_PATH,
    HOME: "/root",
    ...image.env,
    ...spec.env,
  };
  const lines: string[] = [];
  if (nowMillis !== undefined) {
    // The guest has no RTC and a restored snapshot's clock is the snapshot's: set it to now.
    lines.push(`/.shardworks/busybox date -u -s @${Math.round(nowMillis / 1000)} >/dev/null 2>&1`);
  }
  for (const [key, value] of Object.entries(env)) {
    // An image may carry names a shell cannot export; they are skipped, as a shell would.
    if (envKeySchema.safeParse(key).success) lines.push(`export ${key}=${shellQuote(value)}`);
  }
  if (image.workingDir) lines.push(`cd ${shellQuote(image.workingDir)} || exit 126`);
  lines.push(`exec ${spec.command.map(shellQuote).join(" ")}`);
  return `${lines.join("\n")}\n`;
}

interface PreparedImage {
  readonly image: QemuImage;
  readonly initrd: string;
  /** Guest RAM this image needs at least: the initramfs is unpacked into RAM. */
  readonly minMemoryMiB: number;
}

/**
 * Guest RAM for an initramfs of `bytes`: while the kernel unpacks it, the archive and its files are
 * both in RAM, and the root tmpfs may only fill half of RAM; then the kernel (~48 MiB here) and
 * the command need room. 2× was measured too little (60 MiB image: "Initramfs unpacking failed:
 * write error"); 3× + 96 MiB, rounded up to 32 MiB, boots it.
 */
export function guestMemoryFor(bytes: number): number {
  const needed = Math.ceil((3 * bytes) / 2 ** 20) + 96;
  return Math.max(MIN_MEMORY_MIB, Math.ceil(needed / 32) * 32);
}

/** The qemu driver; see the module comment. */
export class QemuDriver implements MigratingDriver {
  readonly name = Driver.Qemu;
  readonly #options: QemuDriverOptions;
  readonly #binary: string;
  readonly #cacheDir: string;
  #host: Promise<Host> | undefined;
  readonly #images = new Map<string, Promise<PreparedImage>>();
  readonly #snapshots = new Map<string, Promise<string>>();
  readonly #pools = new Map<string, QemuVm[]>();
  readonly #poolTargets = new Map<
    string,
    { count: number; prepared: PreparedImage; memoryMiB: number }
  >();
  readonly #refilling = new Map<string, Promise<void>>();
  readonly #sandboxes = new Map<string, QemuSandbox>();
  readonly #incoming = new Set<QemuVm>();
  #closed = false;

  constructor(options: QemuDriverOptions) {
    this.#options = options;
    this.#binary = options.binary ?? process.env.SHARDWORKS_QEMU ?? "qemu-system-x86_64";
    this.#cacheDir = options.cacheDir ?? join(shardworksCacheDir(), "qemu");
  }

  async probe(): Promise<ProbeResult> {
    try {
      const host = await this.#ensureHost();
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
      this.#host = undefined;
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
    const key = await this.#snapshotKey(prepared, memoryMiB);
    if (count === 0) {
      // Release: the paused VMs go (their memory with them); the snapshot file stays on disk.
      this.#poolTargets.delete(key);
      await this.#refilling.get(key);
      const pool = this.#pools.get(key) ?? [];
      this.#pools.delete(key);
      await Promise.all(pool.map((vm) => vm.kill()));
      return;
    }
    await this.#ensureSnapshot(key, prepared, memoryMiB);
    this.#poolTargets.set(key, { count, prepared, memoryMiB });
    await this.#refill(key);
  }

  /** Paused VMs waiting in the warm pools (all images). */
  pooled(): number {
    return [...this.#pools.values()].reduce((n, pool) => n + pool.length, 0);
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
    const key = await this.#snapshotKey(prepared, memoryMiB);

    let vm: QemuVm;
    let start: "warm" | "cold" = "warm";
    const pooled = this.#pools.get(key)?.shift();
    if (pooled) {
      vm = pooled;
      void this.#refill(key);
    } else if (await this.#snapshotFile(key)) {
      vm = await this.#restore(key, prepared, memoryMiB).catch(async (error: unknown) => {
        // A snapshot this QEMU cannot load is useless: drop it and start cold (which retakes it).
        log.warn({ err: error, image: spec.image }, "snapshot restore failed; starting cold");
        const file = await this.#snapshotFile(key);
        if (file) await rm(file, { force: true });
        start = "cold";
        return this.#bootAndSnapshot(key, prepared, memoryMiB, spec.image);
      });
    } else {
      start = "cold";
      vm = await this.#bootAndSnapshot(key, prepared, memoryMiB, spec.image);
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
    const vm = await QemuVm.launch({
      ...(await this.#vmConfig(prepared, memoryMiB)),
      incoming: `tcp:${listenHost}:${port}`,
    });
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
        throw new Error(`incoming migration of sandbox ${request.id} failed: ${describe(error)}`, {
          cause: error,
        });
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
    const vm = await this.#restoreFile(file, prepared, memoryMiB);
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
    this.#closed = true;
    const pooled = [...this.#pools.values()].flat();
    this.#pools.clear();
    this.#poolTargets.clear();
    await Promise.all([
      ...pooled.map((vm) => vm.kill()),
      ...[...this.#incoming].map((vm) => vm.kill()),
      ...[...this.#sandboxes.values()].map((s) => s.stop()),
    ]);
  }

  /** Cold boot; the first cold start of an image leaves a snapshot behind, so the next is warm. */
  async #bootAndSnapshot(
    key: string,
    prepared: PreparedImage,
    memoryMiB: number,
    image: string,
  ): Promise<QemuVm> {
    const vm = await this.#bootCold(prepared, memoryMiB);
    try {
      await this.#ensureSnapshot(key, prepared, memoryMiB, vm);
    } catch (error) {
      log.warn({ err: error, image }, "could not take the image's snapshot; starts stay cold");
    }
    return vm;
  }

  #forget(id: string, sandbox: QemuSandbox): void {
    if (this.#sandboxes.get(id) === sandbox) this.#sandboxes.delete(id);
  }

  // ---- host, images, snapshots -------------------------------------------------------------

  #ensureHost(): Promise<Host> {
    this.#host ??= detectHost({
      binary: this.#binary,
      cacheDir: this.#cacheDir,
      accel: this.#options.accel,
      kvmProbeTimeoutMs: this.#options.kvmProbeTimeoutMs,
      nice: this.#options.nice,
    });
    return this.#host;
  }

  #prepare(image: string, access?: RegistryAccess): Promise<PreparedImage> {
    const key = preparedImageKey(image, access);
    let prepared = this.#images.get(key);
    if (!prepared) {
      prepared = (async () => {
        await this.#ensureHost();
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

  async #vmConfig(prepared: PreparedImage, memoryMiB: number): Promise<VmConfig> {
    const host = await this.#ensureHost();
    return {
      binary: this.#binary,
      kernel: host.kernel.path,
      initrd: prepared.initrd,
      accel: host.accel,
      memoryMiB,
      nice: this.#options.nice,
    };
  }

  async #snapshotKey(prepared: PreparedImage, memoryMiB: number): Promise<string> {
    const host = await this.#ensureHost();
    const digest = prepared.image.digest.replace(/[^A-Za-z0-9_.-]/g, "_");
    const agent = await guestAgentFingerprint();
    return `${digest}-${agent}-${host.kernel.packageName}-qemu${host.qemuVersion}-${host.accel}-${memoryMiB}m`.replace(
      /[^A-Za-z0-9_.-]/g,
      "_",
    );
  }

  async #snapshotFile(key: string): Promise<string | undefined> {
    const file = join(this.#cacheDir, "snapshots", `${key}.vmstate`);
    return (await stat(file).then(
      (s) => s.isFile(),
      () => false,
    ))
      ? file
      : undefined;
  }

  async #bootCold(prepared: PreparedImage, memoryMiB: number): Promise<QemuVm> {
    const vm = await QemuVm.launch(await this.#vmConfig(prepared, memoryMiB));
    try {
      await vm.waitReady(this.#options.bootTimeoutMs ?? 90_000);
      return vm;
    } catch (error) {
      await vm.kill();
      throw new Error(`cold boot of ${prepared.image.digest} failed: ${describe(error)}`, {
        cause: error,
      });
    }
  }

  /**
   * Makes sure the image's snapshot exists. With `vm` (booted, agent ready), snapshots that VM and
   * leaves it paused for the caller to `cont`; without, boots a throwaway VM for it.
   */
  async #ensureSnapshot(
    key: string,
    prepared: PreparedImage,
    memoryMiB: number,
    vm?: QemuVm,
  ): Promise<string> {
    const existing = await this.#snapshotFile(key);
    if (existing) return existing;
    let building = this.#snapshots.get(key);
    if (!building) {
      building = (async () => {
        const file = join(this.#cacheDir, "snapshots", `${key}.vmstate`);
        await mkdir(join(this.#cacheDir, "snapshots"), { recursive: true });
        const source = vm ?? (await this.#bootCold(prepared, memoryMiB));
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
  async #restore(key: string, prepared: PreparedImage, memoryMiB: number): Promise<QemuVm> {
    const file = await this.#snapshotFile(key);
    if (!file) throw new Error(`no snapshot for ${prepared.image.digest}`);
    return this.#restoreFile(file, prepared, memoryMiB);
  }

  async #restoreFile(file: string, prepared: PreparedImage, memoryMiB: number): Promise<QemuVm> {
    const vm = await QemuVm.launch({
      ...(await this.#vmConfig(prepared, memoryMiB)),
      incoming: `exec:cat ${shellQuote(file)}`,
    });
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

  /**
   * Tops the pool of paused restored VMs up to its target, one VM at a time (cores are shared).
   * Concurrent callers share the one refill in flight, so `warm()` resolves when the pool is full.
   */
  #refill(key: string): Promise<void> {
    let refilling = this.#refilling.get(key);
    if (!refilling) {
      refilling = this.#fillPool(key).finally(() => this.#refilling.delete(key));
      this.#refilling.set(key, refilling);
    }
    return refilling;
  }

  async #fillPool(key: string): Promise<void> {
    try {
      for (;;) {
        const target = this.#poolTargets.get(key);
        const pool = this.#pools.get(key) ?? [];
        this.#pools.set(key, pool);
        if (this.#closed || !target || pool.length >= target.count) return;
        const vm = await this.#restore(key, target.prepared, target.memoryMiB);
        if (this.#closed) {
          await vm.kill();
          return;
        }
        pool.push(vm);
        void vm.gone.then(() => {
          const index = pool.indexOf(vm);
          if (index >= 0) pool.splice(index, 1);
        });
      }
    } catch (error) {
      log.warn({ err: error, key }, "could not refill the warm pool");
    }
  }
}
