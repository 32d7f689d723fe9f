/**
 * QEMU warm-start latency: the qemu driver's warm start (snapshot restore, and the paused-VM pool)
 * against the bare primitive underneath — a raw `qemu -incoming "exec:cat snapshot"` + QMP `cont`
 * — in the same run, plus cold vs warm. Writes `bench/results/qemu-warm-start.json`.
 * Run alone: `npx tsx bench/qemu-warm-start.bench.ts` (env SAMPLES, COLD_SAMPLES to change counts).
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg, setPriority, tmpdir } from "node:os";
import { join } from "node:path";
import { Driver, type SandboxSpec } from "../runtime/lib/model";
import { createDriver } from "../runtime/node-agent/drivers";
import { ensureGuestKernel, type QemuDriver } from "../runtime/node-agent/drivers/qemu";
import { ImageStore } from "../runtime/node-agent/images";
import { buildBusyboxImage } from "../test/helpers/images";
import { QmpClient } from "../runtime/node-agent/drivers/qemu/qmp";
import { qemuArgs, shellQuote, type Accelerator } from "../runtime/node-agent/drivers/qemu/vm";

const SAMPLES = Number(process.env.SAMPLES ?? 10);
const COLD_SAMPLES = Number(process.env.COLD_SAMPLES ?? 2);

interface Stats {
  n: number;
  p50: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

function stats(values: number[]): Stats {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p: number) =>
    sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
  const round = (x: number) => Math.round(x * 10) / 10;
  return {
    n: sorted.length,
    p50: round(rank(50)),
    p99: round(rank(99)),
    mean: round(sorted.reduce((a, b) => a + b, 0) / sorted.length),
    min: round(sorted[0]!),
    max: round(sorted.at(-1)!),
  };
}

const spec: SandboxSpec = {
  image: "", // set in main(): an OCI layout built from busybox-static
  command: ["true"],
  env: {},
  resources: { cpuMillis: 250, memoryMiB: 128 },
  nodeSelector: {},
  tolerations: [],
  ports: [],
  network: false,
};

/** One driver start; returns its startMillis after the command has finished and the VM is gone. */
async function driverStart(
  driver: QemuDriver,
  dir: string,
  id: string,
  expect: "warm" | "cold",
): Promise<number> {
  const sandbox = await driver.run({ id, spec, workDir: dir, logFile: join(dir, `${id}.log`) });
  const exit = await sandbox.exit;
  if (sandbox.start !== expect || exit.kind !== "exited" || exit.code !== 0) {
    throw new Error(
      `${id}: expected a ${expect} start exiting 0, got ${sandbox.start} ${JSON.stringify(exit)}`,
    );
  }
  return sandbox.startMillis;
}

/** The bare primitive: spawn QEMU restoring the snapshot, wait for the state, `cont`. */
async function bareRestore(args: {
  kernel: string;
  initrd: string;
  snapshot: string;
  accel: Accelerator;
  dir: string;
}): Promise<number> {
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
        memoryMiB: 128,
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
    for (;;) {
      const { status } = await qmp.execute<{ status: string }>("query-status");
      if (status !== "inmigrate") break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await qmp.execute("cont");
    const millis = performance.now() - t0;
    qmp.close();
    return millis;
  } finally {
    child.kill("SIGKILL");
    await gone;
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "sw-bench-qemu-"));
  const cacheDir = join(dir, "cache");
  // Through the driver factory and the real image store, as a node agent runs it.
  spec.image = buildBusyboxImage(join(dir, "layout"), { tag: "bench" });
  const driver = createDriver(Driver.Qemu, {
    images: new ImageStore({ cacheDir: join(dir, "images") }),
    qemu: { cacheDir },
  }) as QemuDriver;
  try {
    const probe = await driver.probe();
    if (!probe.usable) throw new Error(`qemu driver unusable: ${probe.reason}`);
    const accel: Accelerator = probe.capabilities.notes.some((n) => /using TCG/.test(n))
      ? "tcg"
      : "kvm";
    if (accel === "tcg")
      console.error(
        `!! qemu bench runs under TCG (software emulation), not KVM: ${probe.capabilities.notes[0]}`,
      );
    await driver.prepare(spec.image);

    const cold: number[] = [];
    for (let i = 0; i < COLD_SAMPLES; i++) {
      await rm(join(cacheDir, "snapshots"), { recursive: true, force: true });
      cold.push(await driverStart(driver, dir, `cold-${i}`, "cold"));
      console.error(`cold ${i}: ${Math.round(cold.at(-1)!)} ms`);
    }
    const snapshot = join(cacheDir, "snapshots", (await readdir(join(cacheDir, "snapshots")))[0]!);
    const initrd = join(
      cacheDir,
      "initramfs",
      (await readdir(join(cacheDir, "initramfs"))).find((n) => n.endsWith(".cpio"))!,
    );
    const kernel = (await ensureGuestKernel()).path;

    // Interleave driver and bare samples so host load drifts hit both alike.
    const warm: number[] = [];
    const bare: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      warm.push(await driverStart(driver, dir, `warm-${i}`, "warm"));
      bare.push(await bareRestore({ kernel, initrd, snapshot, accel, dir }));
    }
    console.error(`warm restore p50 ${stats(warm).p50} ms, bare ${stats(bare).p50} ms`);

    const pooled: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      await driver.warm(spec.image, 1); // resolves once a paused VM waits in the pool
      pooled.push(await driverStart(driver, dir, `pool-${i}`, "warm"));
    }

    const result = {
      bench: "qemu-warm-start",
      date: new Date().toISOString(),
      accel,
      notes: probe.capabilities.notes,
      host: { cpus: cpus().length, loadavg1: Math.round(loadavg()[0]! * 100) / 100 },
      what: {
        driverWarmRestore:
          "QemuDriver.run() startMillis: restore the image snapshot in a new QEMU, cont, hand the command to the guest agent",
        driverWarmPool:
          "QemuDriver.run() startMillis with a paused restored VM waiting in the pool (warm(image, 1))",
        bareRestore:
          "raw qemu -incoming exec:cat <snapshot> + QMP cont, same command line, no driver",
        driverCold:
          "QemuDriver.run() startMillis with no snapshot: boot kernel + initramfs to the agent, snapshot it, cont",
      },
      millis: {
        driverWarmRestore: stats(warm),
        driverWarmPool: stats(pooled),
        bareRestore: stats(bare),
        driverCold: stats(cold),
      },
      ratios: {
        driverWarmRestoreOverBare_p50: Math.round((stats(warm).p50 / stats(bare).p50) * 100) / 100,
        driverWarmPoolOverBare_p50: Math.round((stats(pooled).p50 / stats(bare).p50) * 100) / 100,
        coldOverWarmRestore_p50: Math.round((stats(cold).p50 / stats(warm).p50) * 10) / 10,
        coldOverWarmPool_p50: Math.round((stats(cold).p50 / stats(pooled).p50) * 10) / 10,
      },
    };
    await mkdir(join(__dirname, "results"), { recursive: true });
    await writeFile(
      join(__dirname, "results", "qemu-warm-start.json"),
      `${JSON.stringify(result, null, 2)}\n`,
    );
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await driver.close();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
