/**
 * Warm-start latency per driver, measured against the bare primitive underneath in the same run.
 * Process driver: `run()` cold and warm vs. `bwrap … /bin/true` spawned directly.
 * Writes `bench/results/warm-start.json`; each driver is a section (`benchProcessDriver`), so
 * another driver's bench (e.g. qemu: restore vs. bare `qemu -incoming`) adds its own section with
 * `writeWarmStartSection`.
 *
 * Run alone: `npx tsx bench/warm-start.bench.ts` (SHARDWORKS_BENCH_ITERATIONS, default 100).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { sandboxSpecSchema } from "../contract/model";
import { createProcessDriver } from "../runtime/node-agent/drivers/process";
import { ImageStore } from "../runtime/node-agent/images";
import { buildBusyboxImage } from "../test/helpers/images";
import { bwrapTrueArgs, bwrapTrueCommand, stats, timeSpawn, type LatencyStats } from "./lib";

export { stats, type LatencyStats } from "./lib";

/** Latency distribution of one measured path, in milliseconds. */

/** One driver's section of `warm-start.json`. */
export interface WarmStartSection {
  readonly driver: string;
  /** The bare primitive under the driver, measured the same way in the same run. */
  readonly primitive: { readonly command: string; readonly spawnToExit: LatencyStats };
  readonly cold: { readonly startMillis: LatencyStats; readonly runToExit: LatencyStats };
  readonly warm: {
    readonly startMillis: LatencyStats;
    readonly runToExit: LatencyStats;
    readonly servedWarm: number;
  };
  /** cold.startMillis.p50 / warm.startMillis.p50. */
  readonly coldToWarmRatio: number;
  /** warm.runToExit.p50 / primitive.spawnToExit.p50: what the driver costs over the primitive. */
  readonly warmToPrimitiveRatio: number;
  readonly notes: readonly string[];
}

/** Process driver: cold and warm starts through `run()` vs. bare `bwrap … /bin/true`. */
export async function benchProcessDriver(iterations: number): Promise<WarmStartSection> {
  const root = mkdtempSync(join(tmpdir(), "sw-bench-warm-"));
  const images = new ImageStore({ cacheDir: join(root, "cache") });
  const driver = createProcessDriver({ images });
  try {
    const image = buildBusyboxImage(join(root, "layout"));
    const prepared = await images.prepare(image);
    await driver.prepare(image);
    const primitiveArgs = bwrapTrueArgs(prepared.rootfs);
    const primitive: number[] = [];
    const coldStart: number[] = [];
    const coldRun: number[] = [];
    const warmStart: number[] = [];
    const warmRun: number[] = [];
    let servedWarm = 0;
    const runOnce = async (i: number) => {
      const workDir = join(root, `run-${i}`);
      mkdirSync(workDir);
      const started = performance.now();
      const sandbox = await driver.run({
        id: `bench-${i}`,
        spec: sandboxSpecSchema.parse({ image, command: ["/bin/true"] }),
        workDir,
        logFile: join(workDir, "log"),
      });
      const exit = await sandbox.exit;
      if (exit.kind !== "exited" || exit.code !== 0)
        throw new Error(`bench sandbox failed: ${JSON.stringify(exit)}`);
      return { sandbox, total: performance.now() - started };
    };
    // Warm-up: page cache, tsx, the first unpack.
    for (let i = 0; i < 5; i += 1) await timeSpawn("bwrap", primitiveArgs);
    // Interleaved so that drift in machine load hits every path alike.
    for (let i = 0; i < iterations; i += 1) {
      primitive.push(await timeSpawn("bwrap", primitiveArgs));
      await driver.warm(image, 0);
      const cold = await runOnce(i * 2);
      if (cold.sandbox.start !== "cold")
        throw new Error("expected a cold start with an empty pool");
      coldStart.push(cold.sandbox.startMillis);
      coldRun.push(cold.total);
      await driver.warm(image, 1);
      const warm = await runOnce(i * 2 + 1);
      if (warm.sandbox.start === "warm") servedWarm += 1;
      warmStart.push(warm.sandbox.startMillis);
      warmRun.push(warm.total);
    }
    const section: WarmStartSection = {
      driver: "process",
      primitive: {
        command: bwrapTrueCommand,
        spawnToExit: stats(primitive),
      },
      cold: { startMillis: stats(coldStart), runToExit: stats(coldRun) },
      warm: { startMillis: stats(warmStart), runToExit: stats(warmRun), servedWarm },
      coldToWarmRatio: 0,
      warmToPrimitiveRatio: 0,
      notes: [
        "startMillis: run() called -> the command is being exec'd in the sandbox (as reported to the API)",
        "runToExit / spawnToExit: run() or spawn() -> /bin/true has exited and the log is flushed",
        `${iterations} iterations, interleaved; host: ${cpus().length} CPUs shared with other work`,
      ],
    };
    return {
      ...section,
      coldToWarmRatio: round2(section.cold.startMillis.p50 / section.warm.startMillis.p50),
      warmToPrimitiveRatio: round2(section.warm.runToExit.p50 / section.primitive.spawnToExit.p50),
    };
  } finally {
    await driver.close();
    rmSync(root, { recursive: true, force: true });
  }
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

export const resultsFile = join(__dirname, "results", "warm-start.json");

/** Adds or replaces one driver's section in `bench/results/warm-start.json`. */
export function writeWarmStartSection(section: WarmStartSection): void {
  let results: { sections: Record<string, WarmStartSection>; updatedAt?: string } = {
    sections: {},
  };
  try {
    results = JSON.parse(readFileSync(resultsFile, "utf8")) as typeof results;
  } catch {
    // first run
  }
  results.sections[section.driver] = section;
  results.updatedAt = new Date().toISOString();
  mkdirSync(join(__dirname, "results"), { recursive: true });
  writeFileSync(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
}

async function main(): Promise<void> {
  const iterations = Number(process.env.SHARDWORKS_BENCH_ITERATIONS ?? "100");
  const section = await benchProcessDriver(iterations);
  writeWarmStartSection(section);
  console.log(JSON.stringify(section, null, 2));
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
