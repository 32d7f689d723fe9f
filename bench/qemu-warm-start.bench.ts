/**
 * QEMU warm-start latency: the qemu driver's warm start (snapshot restore, and the paused-VM pool)
 * against the bare primitive underneath — a raw `qemu -incoming "exec:cat snapshot"` + QMP `cont`,
 * then the command handed to the guest agent over the raw serial socket — in the same run, plus
 * cold vs warm. Writes `bench/results/qemu-warm-start.json` (details) and the `qemu` section of
 * `bench/results/warm-start.json`. Run alone: `npx tsx bench/qemu-warm-start.bench.ts`
 * (SAMPLES, COLD_SAMPLES change the counts; TCG is slow, so they are small).
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg, setPriority, tmpdir } from "node:os";
import { join } from "node:path";
import { Driver, type SandboxSpec } from "../runtime/lib/model";
import { createDriver } from "../runtime/node-agent/drivers";
import { ensureGuestKernel, type QemuDriver } from "../runtime/node-agent/drivers/qemu";
import { QmpClient, connectUnix } from "../runtime/node-agent/drivers/qemu/qmp";
import { qemuArgs, shellQuote, type Accelerator } from "../runtime/node-agent/drivers/qemu/vm";
import { ImageStore } from "../runtime/node-agent/images";
import { buildBusyboxImage } from "../test/helpers/images";
import { stats as sectionStats, writeWarmStartSection } from "./warm-start.bench";

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

interface Timing {
  /** run()/spawn → the command handed to the running guest. */
  start: number;
  /** run()/spawn → the command's exit code is known. */
  toExit: number;
}

/** One driver start of `true`, to its exit. */
async function driverStart(
  driver: QemuDriver,
  dir: string,
  id: string,
  expect: "warm" | "cold",
): Promise<Timing> {
  const t0 = performance.now();
  const sandbox = await driver.run({ id, spec, workDir: dir, logFile: join(dir, `${id}.log`) });
  const exit = await sandbox.exit;
  const toExit = performance.now() - t0;
  if (sandbox.start !== expect || exit.kind !== "exited" || exit.code !== 0) {
    throw new Error(
      `${id}: expected a ${expect} start exiting 0, got ${sandbox.start} ${JSON.stringify(exit)}`,
    );
  }
  return { start: sandbox.startMillis, toExit };
}

/**
 * The bare primitive: spawn QEMU restoring the snapshot, wait for the state, `cont`, then write
 * the agent's command frame to the raw serial socket and wait for its exit frame.
 */
async function bareRestore(args: {
  kernel: string;
  initrd: string;
  snapshot: string;
  accel: Accelerator;
  dir: string;
}): Promise<Timing> {
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
    if (accel === "tcg") {
      console.error(
        `!! qemu bench runs under TCG (software emulation), not KVM: ${probe.capabilities.notes[0]}`,
      );
    }
    await driver.prepare(spec.image);

    const cold: Timing[] = [];
    for (let i = 0; i < COLD_SAMPLES; i++) {
      await rm(join(cacheDir, "snapshots"), { recursive: true, force: true });
      cold.push(await driverStart(driver, dir, `cold-${i}`, "cold"));
      console.error(`cold ${i}: ${Math.round(cold.at(-1)!.start)} ms`);
    }
    const snapshot = join(cacheDir, "snapshots", (await readdir(join(cacheDir, "snapshots")))[0]!);
    const initrd = join(
      cacheDir,
      "initramfs",
      (await readdir(join(cacheDir, "initramfs"))).find((n) => n.endsWith(".cpio"))!,
    );
    const kernel = (await ensureGuestKernel()).path;

    // Interleave driver and bare samples so host load drifts hit both alike.
    const warm: Timing[] = [];
    const bare: Timing[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      warm.push(await driverStart(driver, dir, `warm-${i}`, "warm"));
      bare.push(await bareRestore({ kernel, initrd, snapshot, accel, dir }));
    }
    const pooled: Timing[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      await driver.warm(spec.image, 1); // resolves once a paused VM waits in the pool
      pooled.push(await driverStart(driver, dir, `pool-${i}`, "warm"));
    }
    const starts = (ts: Timing[]) => ts.map((x) => x.start);
    const exits = (ts: Timing[]) => ts.map((x) => x.toExit);
    const ratio = (a: number, b: number, digits = 100) => Math.round((a / b) * digits) / digits;

    const result = {
      bench: "qemu-warm-start",
      date: new Date().toISOString(),
      accel,
      notes: probe.capabilities.notes,
      host: { cpus: cpus().length, loadavg1: Math.round(loadavg()[0]! * 100) / 100 },
      what: {
        start: "run()/spawn called -> the command handed to the running guest agent",
        toExit: "run()/spawn called -> the command (`true`) has exited and the exit code is known",
        driverWarmRestore:
          "QemuDriver.run() (factory + image store): restore the image snapshot in a new QEMU, cont, command to the agent",
        driverWarmPool:
          "QemuDriver.run() with a paused restored VM waiting in the pool (warm(image, 1)): cont, command",
        bareRestore:
          "raw qemu -incoming exec:cat <snapshot> + QMP cont + command frame on the raw serial socket; same command line, no driver",
        driverCold:
          "QemuDriver.run() with no snapshot: boot kernel + initramfs to the agent, take the snapshot, cont, command",
      },
      millis: {
        start: {
          driverWarmRestore: stats(starts(warm)),
          driverWarmPool: stats(starts(pooled)),
          bareRestore: stats(starts(bare)),
          driverCold: stats(starts(cold)),
        },
        toExit: {
          driverWarmRestore: stats(exits(warm)),
          driverWarmPool: stats(exits(pooled)),
          bareRestore: stats(exits(bare)),
          driverCold: stats(exits(cold)),
        },
      },
      ratios: {
        driverWarmRestoreOverBare_start_p50: ratio(
          stats(starts(warm)).p50,
          stats(starts(bare)).p50,
        ),
        driverWarmRestoreOverBare_toExit_p50: ratio(stats(exits(warm)).p50, stats(exits(bare)).p50),
        driverWarmPoolOverBare_start_p50: ratio(stats(starts(pooled)).p50, stats(starts(bare)).p50),
        coldOverWarmRestore_start_p50: ratio(stats(starts(cold)).p50, stats(starts(warm)).p50, 10),
        coldOverWarmPool_start_p50: ratio(stats(starts(cold)).p50, stats(starts(pooled)).p50, 10),
      },
    };
    await mkdir(join(__dirname, "results"), { recursive: true });
    await writeFile(
      join(__dirname, "results", "qemu-warm-start.json"),
      `${JSON.stringify(result, null, 2)}\n`,
    );
    // The shared per-driver summary (`warm-start.json`), in the shape the process driver uses.
    const warmStart = sectionStats(starts(warm));
    const coldStart = sectionStats(starts(cold));
    writeWarmStartSection({
      driver: "qemu",
      primitive: {
        command:
          'qemu-system-x86_64 -M microvm … -incoming "exec:cat <snapshot>" + QMP cont + command frame on the serial socket',
        spawnToExit: sectionStats(exits(bare)),
      },
      cold: { startMillis: coldStart, runToExit: sectionStats(exits(cold)) },
      warm: {
        startMillis: warmStart,
        runToExit: sectionStats(exits(warm)),
        servedWarm: warm.length,
      },
      coldToWarmRatio: ratio(coldStart.p50Millis, warmStart.p50Millis),
      warmToPrimitiveRatio: ratio(
        sectionStats(exits(warm)).p50Millis,
        sectionStats(exits(bare)).p50Millis,
      ),
      notes: [
        `accelerator: ${accel}${accel === "tcg" ? " (KVM unusable on this host; software emulation)" : ""}`,
        "warm = restore of the per-image snapshot (no pool); with a pool of paused VMs see qemu-warm-start.json",
        `${SAMPLES} warm / ${COLD_SAMPLES} cold samples, interleaved with the primitive; host: ${cpus().length} CPUs shared`,
      ],
    });
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
