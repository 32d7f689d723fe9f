/**
 * The `firecracker` driver: each sandbox is a Firecracker microVM, driven through the Firecracker
 * API on its unix socket (optionally under the jailer). For production on bare metal with KVM.
 *
 * Guest layout: drive `agent` (root, read-only) holds busybox and `/init`, the guest agent; drive
 * `image` (read-only) is the image's root filesystem as ext4, built once per manifest digest. The
 * agent mounts the image, says `SHARDWORKS_READY` on the serial console, reads one base64 line
 * (the launch script) from it, says `SHARDWORKS_STARTED`, runs the script chrooted into the image
 * and prints `SHARDWORKS_EXIT=<code>` before powering off. Warm starts restore a snapshot taken
 * right after `SHARDWORKS_READY`, so only the script is new.
 *
 * UNVERIFIED on the machine this was written on: there is no firecracker binary and KVM is not
 * usable, so only the API client's request sequences are tested (against a recording server).
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  Driver,
  registryAccessOf,
  type RegistryAccess,
  type SandboxSpec,
} from "../../../../contract/model";
import type { ProbeResult, RunRequest, RunningSandbox, SandboxDriver } from "../../driver";
import {
  ImageStore,
  preparedImageKey,
  type ImageStoreOptions,
  type PreparedImage,
} from "../../images";
import { launchScript } from "../launch-script";
import { bootMicroVm, restoreMicroVm, snapshotMicroVm } from "./api";
import { buildAgentDrive, buildImageDrive } from "./guest-drives";
import { firecrackerAbsence } from "./host";
import { startVmm, type Vmm } from "./vmm";

/** Options of the firecracker driver. */
export interface FirecrackerDriverOptions {
  readonly images?: ImageStore;
  readonly imageStore?: ImageStoreOptions;
  /** Default: `firecracker` on PATH. */
  readonly firecrackerPath?: string;
  /** An uncompressed guest kernel (vmlinux) with virtio-mmio, virtio-blk and ext4 built in. Required. */
  readonly kernelPath?: string;
  /** Default: `console=ttyS0 reboot=k panic=1 pci=off quiet`. */
  readonly bootArgs?: string;
  /** Run each VMM under the jailer (chroot, uid/gid, cgroups). Absent: no jailer. */
  readonly jailer?: {
    readonly path?: string;
    readonly uid: number;
    readonly gid: number;
    readonly chrootBaseDir: string;
  };
  /** Static busybox copied into the guest agent drive. Default `/bin/busybox`. */
  readonly busyboxPath?: string;
  /** Where ext4 drives and snapshots are kept. Default: a temp dir. */
  readonly stateDir?: string;
}

/** Creates the `firecracker` driver. */
export function createFirecrackerDriver(options: FirecrackerDriverOptions = {}): FirecrackerDriver {
  return new FirecrackerDriver(options);
}

/** Firecracker microVMs with snapshot warm starts. */
export class FirecrackerDriver implements SandboxDriver {
  readonly name = Driver.Firecracker;
  readonly #options: FirecrackerDriverOptions;
  readonly #images: ImageStore;
  readonly #drives = new Map<string, Promise<{ prepared: PreparedImage; drive: string }>>();
  readonly #snapshots = new Map<string, Promise<{ snapshot: string; memory: string }>>();
  readonly #vmms = new Set<ChildProcess>();
  #state: Promise<{ dir: string; agentDrive: string }> | undefined;

  constructor(options: FirecrackerDriverOptions = {}) {
    this.#options = options;
    this.#images = options.images ?? new ImageStore(options.imageStore);
  }

  async probe(): Promise<ProbeResult> {
    await Promise.resolve();
    const reasons = firecrackerAbsence(this.#options);
    if (reasons.length > 0)
      return { usable: false, reason: `Firecracker cannot run here: ${reasons.join("; ")}` };
    return {
      usable: true,
      capabilities: {
        driver: Driver.Firecracker,
        hardwareIsolated: true,
        warmStart: "snapshot",
        snapshots: true,
        liveMigration: false,
        notes: [
          `Firecracker microVMs (KVM)${this.#options.jailer ? " under the jailer" : ""}; kernel ${this.#options.kernelPath ?? ""}`,
          "no guest network: spec.network and spec.ports are refused by this driver",
        ],
      },
    };
  }

  async prepare(image: string, access?: RegistryAccess): Promise<void> {
    await this.#imageDrive(image, access);
  }

  async warm(image: string, count: number, access?: RegistryAccess): Promise<void> {
    // One snapshot serves any number of starts (its memory file is mapped copy-on-write).
    if (count > 0) await this.#snapshot(image, access);
  }

  async run(request: RunRequest): Promise<RunningSandbox> {
    const started = performance.now();
    const { spec } = request;
    if (spec.network || spec.ports.length > 0) {
      throw new Error(
        "firecracker driver: guest networking is not implemented; use spec.network: false and no ports",
      );
    }
    const access = registryAccessOf(spec);
    const { drive, prepared } = await this.#imageDrive(spec.image, access);
    const script = launchScript(spec, prepared.config);
    const snapshot = this.#snapshots.has(preparedImageKey(spec.image, access))
      ? await this.#snapshot(spec.image, access)
      : undefined;
    const vm = await startVmm(this.#options, request.workDir, request.logFile, this.#vmms);
    try {
      if (snapshot) {
        await restoreMicroVm(vm.api, snapshot.snapshot, snapshot.memory);
      } else {
        await bootMicroVm(vm.api, await this.#config(vm, spec, drive));
        await vm.marker("SHARDWORKS_READY");
      }
      vm.send(`${Buffer.from(script).toString("base64")}\n`);
      await vm.marker("SHARDWORKS_STARTED");
    } catch (error) {
      vm.kill();
      throw error;
    }
    return {
      id: request.id,
      start: snapshot ? "warm" : "cold",
      startMillis: performance.now() - started,
      endpoints: {},
      exit: vm.exit,
      stop: async () => {
        vm.kill();
        await vm.exit;
      },
    };
  }

  async close(): Promise<void> {
    const vmms = [...this.#vmms];
    for (const vmm of vmms) vmm.kill("SIGKILL");
    await Promise.all(
      vmms.map((vmm) =>
        vmm.exitCode === null ? new Promise((r) => vmm.once("exit", r)) : Promise.resolve(),
      ),
    );
    const state = this.#state;
    this.#state = undefined;
    if (state && !this.#options.stateDir)
      await rm((await state).dir, { recursive: true, force: true });
  }

  async #config(vm: Vmm, spec: SandboxSpec, imageDrive: string) {
    const { agentDrive } = await this.#stateDirs();
    return {
      kernelPath: await vm.expose(this.#options.kernelPath ?? ""),
      bootArgs: `${this.#options.bootArgs ?? "console=ttyS0 reboot=k panic=1 pci=off quiet"} init=/init`,
      drives: [
        { id: "agent", path: await vm.expose(agentDrive), readOnly: true },
        { id: "image", path: await vm.expose(imageDrive), readOnly: true },
      ],
      vcpus: Math.max(1, Math.ceil(spec.resources.cpuMillis / 1000)),
      memoryMiB: Math.max(64, spec.resources.memoryMiB),
    };
  }

  #stateDirs(): Promise<{ dir: string; agentDrive: string }> {
    this.#state ??= (async () => {
      const dir =
        this.#options.stateDir ?? (await mkdtemp(join(tmpdir(), "shardworks-firecracker-")));
      const agentDrive = join(dir, "agent.ext4");
      await buildAgentDrive(
        join(dir, "agent-root"),
        agentDrive,
        this.#options.busyboxPath ?? "/bin/busybox",
      );
      return { dir, agentDrive };
    })();
    return this.#state;
  }

  /** The image as an ext4 drive, built once per manifest digest. */
  #imageDrive(
    image: string,
    access?: RegistryAccess,
  ): Promise<{ prepared: PreparedImage; drive: string }> {
    const key = preparedImageKey(image, access);
    let pending = this.#drives.get(key);
    if (!pending) {
      pending = (async () => {
        const prepared = await this.#images.prepare(image, access);
        const { dir } = await this.#stateDirs();
        const drive = join(dir, "images", `${prepared.manifestDigest.slice(7)}.ext4`);
        if (!existsSync(drive)) {
          await mkdir(dirname(drive), { recursive: true });
          const temporary = `${drive}.tmp-${randomBytes(4).toString("hex")}`;
          await buildImageDrive(prepared.rootfs, temporary);
          await rename(temporary, drive);
        }
        return { prepared, drive };
      })();
      this.#drives.set(key, pending);
      pending.catch(() => this.#drives.delete(key));
    }
    return pending;
  }

  /** A snapshot of a guest booted to `SHARDWORKS_READY` for this image, taken once. */
  #snapshot(image: string, access?: RegistryAccess): Promise<{ snapshot: string; memory: string }> {
    // Per access, like the drives: the platform's snapshot never serves a shard's run.
    const key = preparedImageKey(image, access);
    let pending = this.#snapshots.get(key);
    if (!pending) {
      pending = (async () => {
        const { prepared, drive } = await this.#imageDrive(image, access);
        const { dir } = await this.#stateDirs();
        const base = join(dir, "snapshots", prepared.manifestDigest.slice(7));
        await mkdir(base, { recursive: true });
        const vm = await startVmm(this.#options, base, join(base, "boot.log"), this.#vmms);
        try {
          const spec = { resources: { cpuMillis: 1000, memoryMiB: 128 } } as SandboxSpec;
          await bootMicroVm(vm.api, await this.#config(vm, spec, drive));
          await vm.marker("SHARDWORKS_READY");
          await snapshotMicroVm(
            vm.api,
            await vm.inside(join(base, "vm.snap")),
            await vm.inside(join(base, "vm.mem")),
          );
        } finally {
          vm.kill();
          await vm.exit;
        }
        return { snapshot: join(base, "vm.snap"), memory: join(base, "vm.mem") };
      })();
      this.#snapshots.set(key, pending);
      pending.catch(() => this.#snapshots.delete(key));
    }
    return pending;
  }
}
