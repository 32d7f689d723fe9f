/**
 * QEMU warm-start latency: the qemu driver's warm start (snapshot restore, and the paused-VM pool)
 * against the bare primitive underneath — a raw `qemu -incoming "exec:cat snapshot"` + QMP `cont`,
 * then the command handed to the guest agent over the raw serial socket — in the same run, plus
 * cold vs warm. Writes `bench/results/qemu-warm-start.json` (details) and the `qemu` section of
 * `bench/results/warm-start.json`. Run alone: `npx tsx bench/qemu-warm-start.bench.ts`
 * (SAMPLES, COLD_SAMPLES change the counts; TCG is slow, so they are small).
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Driver, sandboxSpecSchema, type SandboxSpec } from "../contract/model";
import { createDriver } from "../runtime/node-agent/drivers";
import { ensureGuestKernel, type QemuDriver } from "../runtime/node-agent/drivers/qemu";
import type { Accelerator } from "../runtime/node-agent/drivers/qemu/command-line";
import { ImageStore } from "../runtime/node-agent/images";
import { buildBusyboxImage } from "../test/helpers/images";
import { bareQemuRestore, ratio, stats } from "./lib";
import { writeWarmStartSection } from "./warm-start.bench";

const SAMPLES = Number(process.env.SAMPLES ?? 10);
const COLD_SAMPLES = Number(process.env.COLD_SAMPLES ?? 2);

/** `true`, with the spec's defaults (250 mCPU, 128 MiB, no network). */
const spec: SandboxSpec = sandboxSpecSchema.parse({
  image: "oci:/unset", // set in main(): an OCI layout built from busybox-static
  command: ["true"],
});

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
      bare.push(await bareQemuRestore({ kernel, initrd, snapshot, accel, dir }));
    }
    const pooled: Timing[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      await driver.warm(spec.image, 1); // resolves once a paused VM waits in the pool
      pooled.push(await driverStart(driver, dir, `pool-${i}`, "warm"));
    }
    const starts = (ts: Timing[]) => ts.map((x) => x.start);
    const exits = (ts: Timing[]) => ts.map((x) => x.toExit);

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
    const warmStart = stats(starts(warm));
    const coldStart = stats(starts(cold));
    writeWarmStartSection({
      driver: "qemu",
      primitive: {
        command:
          'qemu-system-x86_64 -M microvm … -incoming "exec:cat <snapshot>" + QMP cont + command frame on the serial socket',
        spawnToExit: stats(exits(bare)),
      },
      cold: { startMillis: coldStart, runToExit: stats(exits(cold)) },
      warm: {
        startMillis: warmStart,
        runToExit: stats(exits(warm)),
        servedWarm: warm.length,
      },
      coldToWarmRatio: ratio(coldStart.p50, warmStart.p50),
      warmToPrimitiveRatio: ratio(stats(exits(warm)).p50, stats(exits(bare)).p50),
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
