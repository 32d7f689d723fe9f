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
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, createWriteStream, existsSync, statSync } from "node:fs";
import { chmod, copyFile, link, mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { logger } from "../../lib/logger";
import { Driver, registryAccessOf, type RegistryAccess, type SandboxSpec } from "../../lib/model";
import type {
  ProbeResult,
  RunRequest,
  RunningSandbox,
  SandboxDriver,
  SandboxExit,
} from "../driver";
import {
  ImageStore,
  preparedImageKey,
  type ImageStoreOptions,
  type PreparedImage,
} from "../images";
import { launchScript } from "./launch-script";
import { FirecrackerApi, bootMicroVm, restoreMicroVm, snapshotMicroVm } from "./firecracker-api";

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

const log = logger.child({ component: "firecracker-driver" });

/** Finds an executable on PATH (or checks an absolute path). */
function findExecutable(name: string): string | undefined {
  const candidates = name.includes("/")
    ? [name]
    : (process.env.PATH ?? "").split(delimiter).map((d) => join(d, name));
  return candidates.find((path) => {
    try {
      accessSync(path, constants.X_OK);
      return statSync(path).isFile();
    } catch {
      return false;
    }
  });
}

/** Why Firecracker cannot run on this host, or an empty list if it can (as far as can be seen without booting). */
export function firecrackerAbsence(options: FirecrackerDriverOptions = {}): string[] {
  const reasons: string[] = [];
  const binary = options.firecrackerPath ?? "firecracker";
  if (!findExecutable(binary))
    reasons.push(
      `no "${binary}" binary (Firecracker is not installed; Debian does not package it)`,
    );
  if (options.jailer && !findExecutable(options.jailer.path ?? "jailer"))
    reasons.push(`no "${options.jailer.path ?? "jailer"}" binary`);
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch {
    reasons.push("/dev/kvm is absent or not accessible (Firecracker needs KVM)");
  }
  if (!options.kernelPath)
    reasons.push("no guest kernel configured (options.kernelPath, an uncompressed vmlinux)");
  else if (!existsSync(options.kernelPath))
    reasons.push(`guest kernel ${options.kernelPath} does not exist`);
  return reasons;
}

/** Creates the `firecracker` driver. */
export function createFirecrackerDriver(options: FirecrackerDriverOptions = {}): FirecrackerDriver {
  return new FirecrackerDriver(options);
}

/** The guest agent, `/init` of the agent drive. */
const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin 2>/dev/null
export PATH=/bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mount -o ro /dev/vdb /image
mount -t proc proc /image/proc
mount -t devtmpfs dev /image/dev
mount -t tmpfs tmp /image/tmp
mount -t tmpfs work /image/work
mount -t tmpfs shardworks /image/.shardworks
cp /bin/busybox /image/.shardworks/busybox
stty -echo 2>/dev/null
echo SHARDWORKS_READY
read -r line
echo "$line" | base64 -d > /image/.shardworks/script
echo SHARDWORKS_STARTED
chroot /image /.shardworks/busybox sh /.shardworks/script
echo "SHARDWORKS_EXIT=$?"
reboot -f
`;

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
    const vm = await this.#startVmm(request.workDir, request.logFile);
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
      const staging = join(dir, "agent-root");
      for (const sub of ["bin", "proc", "dev", "run", "image"])
        await mkdir(join(staging, sub), { recursive: true });
      await copyFile(this.#options.busyboxPath ?? "/bin/busybox", join(staging, "bin", "busybox"));
      await writeFile(join(staging, "init"), guestInit);
      await chmod(join(staging, "init"), 0o755);
      const agentDrive = join(dir, "agent.ext4");
      mkfsExt4(staging, agentDrive, 16);
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
          const size = spawnSync("du", ["-sm", prepared.rootfs], { encoding: "utf8" }).stdout.split(
            "\t",
          )[0];
          mkfsExt4(prepared.rootfs, temporary, Math.ceil(Number(size ?? "64") * 1.5) + 16);
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
        const vm = await this.#startVmm(base, join(base, "boot.log"));
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

  /** Starts a Firecracker process (jailed if configured) and waits for its API socket. */
  async #startVmm(workDir: string, logFile: string): Promise<Vmm> {
    const id = `sw-${randomBytes(6).toString("hex")}`;
    const firecracker =
      findExecutable(this.#options.firecrackerPath ?? "firecracker") ?? "firecracker";
    const jailer = this.#options.jailer;
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
    this.#vmms.add(child);
    const vm = new Vmm(child, new FirecrackerApi(socket), logFile, root);
    void vm.exit.then(() => this.#vmms.delete(child));
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
}

/** One Firecracker process: its API, its serial console and its exit. */
class Vmm {
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

function mkfsExt4(sourceDir: string, file: string, sizeMiB: number): void {
  const result = spawnSync("mkfs.ext4", ["-q", "-F", "-d", sourceDir, file, `${sizeMiB}M`], {
    encoding: "utf8",
  });
  if (result.error || result.status !== 0) {
    throw new Error(
      `mkfs.ext4 could not build ${file} (${result.error?.message ?? result.stderr.trim()}); install e2fsprogs`,
    );
  }
}
