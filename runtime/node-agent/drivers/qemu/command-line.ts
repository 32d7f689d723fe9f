/**
 * The QEMU command line of a `microvm` guest (identical for boot, restore and migration targets)
 * and what it is built from.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";

/** How QEMU executes guest code. */
export type Accelerator = "kvm" | "tcg";

/** What a VM is started from. */
export interface VmConfig {
  /** QEMU binary; default `qemu-system-x86_64`. */
  readonly binary: string;
  readonly kernel: string;
  readonly initrd: string;
  readonly accel: Accelerator;
  /** Guest RAM in MiB (128 unless the sandbox asks for more). */
  readonly memoryMiB: number;
  /** A QEMU `-incoming` URI: restore from a snapshot (`exec:cat …`) or receive a live migration. */
  readonly incoming?: string;
  /** Niceness of the QEMU process; default 10 (the host's cores are shared). */
  readonly nice?: number;
}

let parentDeathSignal: Promise<boolean> | undefined;
/**
 * Whether util-linux `setpriv` (Debian: always installed) can tie QEMU's life to ours: asked once,
 * on the first VM start (not on import), without blocking the event loop.
 */
export function withParentDeathSignal(): Promise<boolean> {
  parentDeathSignal ??= new Promise((resolve) =>
    execFile("setpriv", ["--help"], { encoding: "utf8" }, (error, stdout) =>
      resolve(!error && stdout.includes("--pdeathsig")),
    ),
  );
  return parentDeathSignal;
}

/**
 * Kernel parameters that keep a TCG guest from hanging in early boot on a busy host: it calibrates
 * its TSC against the emulated PIT, and when host load makes that fail it marks the TSC unstable
 * and waits forever for timer ticks (seen here at load 9 on 2 cores). Under TCG the guest's TSC
 * runs at the host's TSC rate, so the host's frequency is given instead of measured.
 */
export function tcgTimingParams(cpuinfo: string): string {
  const mhz = Number(/^cpu MHz\s*:\s*([0-9.]+)/m.exec(cpuinfo)?.[1] ?? "2000");
  const khz = Math.round((Number.isFinite(mhz) && mhz > 0 ? mhz : 2000) * 1000);
  // lpj = loops per jiffy at HZ=250 (Debian), so the delay loop needs no calibration either.
  return `tsc_early_khz=${khz} lpj=${khz * 4} tsc=reliable no_timer_check`;
}

let cachedCpuinfo: string | undefined;
function hostCpuinfo(): string {
  try {
    cachedCpuinfo ??= readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    cachedCpuinfo = "";
  }
  return cachedCpuinfo;
}

/** The QEMU arguments of a microvm guest; identical for boot, restore and migration targets. */
export function qemuArgs(config: VmConfig, qmpPath: string, serialPath: string): string[] {
  const args = [
    "-M",
    "microvm,x-option-roms=off,isa-serial=on,rtc=off",
    "-accel",
    config.accel,
    "-m",
    String(config.memoryMiB),
    "-smp",
    "1",
    "-nodefaults",
    "-no-user-config",
    "-nographic",
    "-no-reboot",
    "-kernel",
    config.kernel,
    "-initrd",
    config.initrd,
    // panic=-1 + -no-reboot: a guest panic ends QEMU instead of hanging the sandbox.
    "-append",
    process.env.SHARDWORKS_QEMU_APPEND ??
      `console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init${config.accel === "tcg" ? ` ${tcgTimingParams(hostCpuinfo())}` : ""}`,
    "-chardev",
    `socket,id=serial0,path=${serialPath},server=on,wait=off`,
    "-serial",
    "chardev:serial0",
    "-qmp",
    `unix:${qmpPath},server=on,wait=off`,
  ];
  if (config.accel === "kvm") args.push("-cpu", "host");
  if (config.incoming) args.push("-incoming", config.incoming);
  return args;
}
