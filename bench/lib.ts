/**
 * What every bench shares: one latency summary (nearest-rank percentiles) and the bare
 * primitives the runtime is compared against in the same run — `bwrap … /bin/true` for the
 * process driver, and a raw QEMU snapshot restore (`-incoming "exec:cat <snapshot>"` + QMP
 * `cont` + the command frame on the serial socket) for the qemu driver.
 */
import { spawn } from "node:child_process";
import { setPriority } from "node:os";
import { join } from "node:path";
import { QmpClient, connectUnix } from "../runtime/node-agent/drivers/qemu/qmp";
import { qemuArgs, type Accelerator } from "../runtime/node-agent/drivers/qemu/command-line";
import { shellQuote } from "../runtime/node-agent/drivers/qemu/vm";

/** Latency summary in milliseconds. */
export interface LatencyStats {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly mean: number;
  readonly min: number;
  readonly max: number;
}

/** Nearest-rank percentile (`p` in 0–100) of ascending `sorted`; NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}

/** The one latency summary of every bench (rounded to 0.01 ms). */
export function stats(samples: readonly number[]): LatencyStats {
  const sorted = [...samples].sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    n: sorted.length,
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    mean: round(sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length)),
    min: round(sorted[0] ?? NaN),
    max: round(sorted.at(-1) ?? NaN),
  };
}

/** a / b rounded to `1/digits`. */
export function ratio(a: number, b: number, digits = 100): number {
  return Math.round((a / b) * digits) / digits;
}

/** Spawns `command` and resolves with the milliseconds until it exited 0. */
export async function timeSpawn(command: string, args: readonly string[]): Promise<number> {
  const started = performance.now();
  const child = spawn(command, args, { stdio: "ignore" });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", resolve);
  });
  if (code !== 0) throw new Error(`${command} exited ${code}`);
  return performance.now() - started;
}

/** The bare bubblewrap primitive under the process driver: `bwrap … <rootfs> … /bin/true`. */
export function bwrapTrueArgs(rootfs: string): string[] {
  return [
    "--unshare-all",
    "--die-with-parent",
    "--ro-bind",
    rootfs,
    "/",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "/bin/true",
  ];
}
export const bwrapTrueCommand =
  "bwrap --unshare-all --die-with-parent --ro-bind <rootfs> / --proc /proc --dev /dev /bin/true";

export interface RestoreTiming {
  /** spawn → the command handed to the running guest. */
  readonly start: number;
  /** spawn → the command's exit frame. */
  readonly toExit: number;
}

/**
 * The bare QEMU primitive: spawn QEMU restoring the snapshot, wait for the state, `cont`, then
 * write the guest agent's command frame to the raw serial socket and wait for its exit frame.
 */
export async function bareQemuRestore(args: {
  kernel: string;
  initrd: string;
  snapshot: string;
  accel: Accelerator;
  dir: string;
  memoryMiB?: number;
}): Promise<RestoreTiming> {
  const t0 = performance.now();
  const qmpPath = join(args.dir, "bare-qmp.sock");
  const serialPath = join(args.dir, "bare-serial.sock");
  const child = spawn(
    "qemu-system-x86_64",
    qemuArgs(
      {
        binary: "qemu-system-x86_64",
        kernel: args.kernel,
        initrd: args.initrd,
        accel: args.accel,
        memoryMiB: args.memoryMiB ?? 128,
        incoming: `exec:cat ${shellQuote(args.snapshot)}`,
      },
      qmpPath,
      serialPath,
    ),
    { stdio: "ignore" },
  );
  // Same niceness as the driver gives its QEMUs, so the comparison is like for like.
  if (child.pid !== undefined) setPriority(child.pid, 10);
  const gone = new Promise((resolve) => child.once("exit", resolve));
  try {
    const qmp = await QmpClient.connect(qmpPath);
    const serial = await connectUnix(serialPath, 10_000);
    for (;;) {
      const { status } = await qmp.execute<{ status: string }>("query-status");
      if (status !== "inmigrate") break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await qmp.execute("cont");
    const exited = new Promise<void>((resolve) => {
      let seen = "";
      serial.on("data", (chunk: Buffer) => {
        seen += chunk.toString("latin1");
        if (seen.includes("\x1eX")) resolve(); // the agent's exit frame
      });
    });
    serial.write(`\x1eC${Buffer.from("exec true\n").toString("base64")}\n`);
    const start = performance.now() - t0;
    await exited;
    const toExit = performance.now() - t0;
    qmp.close();
    serial.destroy();
    return { start, toExit };
  } finally {
    child.kill("SIGKILL");
    await gone;
  }
}
