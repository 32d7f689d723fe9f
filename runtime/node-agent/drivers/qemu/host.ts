/**
 * What the qemu driver finds out about the host once: the QEMU version, the guest kernel, and
 * the accelerator (KVM when configured or when a short probe boot works, else TCG), with notes.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { release } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { logger } from "../../../lib/logger";
import { accelFromEnv } from "./config";
import { ensureInitramfs, guestAgentFingerprint, hostBusybox } from "./initramfs";
import { ensureGuestKernel, shardworksCacheDir, type GuestKernel } from "./kernel";
import type { Accelerator } from "./command-line";
import { QemuVm, sweepStaleSocketDirs } from "./vm";

const run = promisify(execFile);
const log = logger.child({ component: "qemu-driver" });

/** The smallest guest memory, MiB (also the KVM probe's). */
export const MIN_MEMORY_MIB = 128;

/** What the driver knows about the host after {@link detectHost}. */
export interface Host {
  readonly kernel: GuestKernel;
  readonly accel: Accelerator;
  readonly qemuVersion: string;
  readonly notes: string[];
}

/** What {@link detectHost} needs from the driver's options. */
export interface HostOptions {
  readonly binary: string;
  readonly cacheDir: string;
  readonly accel?: Accelerator | "auto" | undefined;
  readonly kvmProbeTimeoutMs?: number | undefined;
  readonly nice?: number | undefined;
}

/** Check QEMU and busybox, fetch the guest kernel, choose the accelerator. */
export async function detectHost(options: HostOptions): Promise<Host> {
  let qemuVersion: string;
  try {
    const { stdout } = await run(options.binary, ["--version"]);
    qemuVersion = /version\s+(\S+)/.exec(stdout)?.[1] ?? stdout.split("\n")[0] ?? "unknown";
  } catch (error) {
    throw new Error(
      `${options.binary} is not runnable: install Debian's qemu-system-x86 or set SHARDWORKS_QEMU`,
      {
        cause: error,
      },
    );
  }
  await stat(hostBusybox).catch(() => {
    throw new Error(
      `${hostBusybox} is missing: install Debian's busybox-static or set SHARDWORKS_BUSYBOX`,
    );
  });
  const kernel = await ensureGuestKernel();
  const swept = await sweepStaleSocketDirs();
  if (swept > 0) log.info({ swept }, "removed socket dirs of QEMUs that died with their agent");
  const notes: string[] = [];
  const accel = await chooseAccel(options, kernel, qemuVersion, notes);
  notes.push(`guest kernel ${kernel.packageName}; QEMU ${qemuVersion} microvm, 1 vCPU`);
  return { kernel, accel, qemuVersion, notes };
}

async function chooseAccel(
  options: HostOptions,
  kernel: GuestKernel,
  qemuVersion: string,
  notes: string[],
): Promise<Accelerator> {
  const wanted = options.accel ?? accelFromEnv() ?? "auto";
  if (wanted === "tcg") {
    notes.push(
      "TCG (software emulation) chosen by configuration: no hardware virtualization, slow",
    );
    return "tcg";
  }
  if (wanted === "kvm") {
    notes.push("KVM chosen by configuration (not probed)");
    return "kvm";
  }
  const usable = await stat("/dev/kvm").then(
    () => true,
    () => false,
  );
  if (!usable) {
    notes.push("no /dev/kvm: using TCG (software emulation, slow)");
    log.warn("no /dev/kvm: the qemu driver uses TCG (software emulation)");
    return "tcg";
  }
  // KVM can exist and still not work (here: the guest spins in early boot). Probe once per
  // host/kernel/QEMU with a short boot and remember the verdict.
  // The verdict is per host, so it lives in the host-wide cache even when cacheDir is private.
  const probeDir = join(shardworksCacheDir(), "qemu");
  const probeFile = join(probeDir, "kvm-probe.json");
  const probeKey = `${release()}|${kernel.packageName}|${qemuVersion}|${await guestAgentFingerprint()}`;
  const cached = await readFile(probeFile, "utf8")
    .then((text) => JSON.parse(text) as { key: string; kvm: boolean; detail: string })
    .catch(() => undefined);
  let verdict = cached?.key === probeKey ? cached : undefined;
  if (!verdict) {
    const timeoutMs = options.kvmProbeTimeoutMs ?? 8000;
    log.info({ timeoutMs }, "probing KVM with a short guest boot");
    const detail = await probeKvm(options, kernel, timeoutMs);
    verdict = { key: probeKey, kvm: detail === "ok", detail };
    await mkdir(probeDir, { recursive: true });
    await writeFile(probeFile, JSON.stringify(verdict));
  }
  if (verdict.kvm) {
    notes.push("KVM works here: hardware-accelerated guests");
    return "kvm";
  }
  notes.push(`KVM unusable here (${verdict.detail}): using TCG (software emulation, slow)`);
  log.warn({ detail: verdict.detail }, "KVM unusable: the qemu driver falls back to TCG");
  return "tcg";
}

async function probeKvm(
  options: HostOptions,
  kernel: GuestKernel,
  timeoutMs: number,
): Promise<string> {
  await mkdir(options.cacheDir, { recursive: true });
  const empty = await mkdtemp(join(options.cacheDir, ".probe-root-"));
  let vm: QemuVm | undefined;
  try {
    const initrd = await ensureInitramfs({
      rootfs: empty,
      key: "kvm-probe",
      cacheDir: join(options.cacheDir, "initramfs"),
    });
    vm = await QemuVm.launch({
      binary: options.binary,
      kernel: kernel.path,
      initrd,
      accel: "kvm",
      memoryMiB: MIN_MEMORY_MIB,
      nice: options.nice,
    });
    await vm.waitReady(timeoutMs);
    return "ok";
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return /timed out/.test(message)
      ? `a KVM guest did not finish booting within ${timeoutMs} ms`
      : message;
  } finally {
    await vm?.kill();
    await rm(empty, { recursive: true, force: true });
  }
}
