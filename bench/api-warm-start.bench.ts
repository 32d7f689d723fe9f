/**
 * Warm-start latency through the scheduler API, per driver, against the bare primitive underneath
 * IN THE SAME RUN (interleaved sample by sample): raw `bwrap … /bin/true` for process, a raw QEMU
 * snapshot restore (`-incoming "exec:cat <snapshot>"` + QMP `cont` + command frame) for qemu —
 * plus the driver's own warm `run()` called directly. The API path is the whole product path: HTTP + zod, etcd create, the elected
 * placer's pass and bind transaction, the node agent's watch, status CAS `starting`, `driver.run`,
 * CAS `running`, and the API's watch seeing it (`POST /v1/sandboxes?wait=running`).
 * Writes bench/results/api-warm-start.json.
 *
 *   npx tsx bench/api-warm-start.bench.ts [--drivers process,qemu] [--iterations 30]
 */
import { mkdtemp, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { sandboxSpecSchema, startEtcd, type Driver, type SandboxRecord } from "../runtime/lib";
import { NodeAgent } from "../runtime/node-agent/agent";
import { createDriver } from "../runtime/node-agent/drivers";
import { ensureGuestKernel } from "../runtime/node-agent/drivers/qemu";
import type { Accelerator } from "../runtime/node-agent/drivers/qemu/command-line";
import { ImageStore } from "../runtime/node-agent/images";
import { startScheduler } from "../runtime/scheduler";
import { buildBusyboxImage } from "../test/helpers/images";
import { bareQemuRestore, bwrapTrueArgs, bwrapTrueCommand, ratio, stats, timeSpawn } from "./lib";

const TOKEN = "bench-platform-token-0123456789";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      drivers: { type: "string", default: "process,qemu" },
      iterations: { type: "string" },
    },
  });
  const work = await mkdtemp(join(tmpdir(), "sw-api-bench-"));
  const etcd = await startEtcd();
  const scheduler = await startScheduler({ etcdEndpoints: [etcd.endpoint], platformToken: TOKEN });
  const image = buildBusyboxImage(join(work, "image"));
  const sections: Record<string, unknown> = {};
  try {
    for (const name of values.drivers.split(",") as Driver[]) {
      const iterations = Number(values.iterations ?? (name === "qemu" ? 8 : 30));
      // Own caches, so the primitive can restore the very snapshot the driver made.
      const images = new ImageStore({ cacheDir: join(work, `images-${name}`) });
      const qemuCache = join(work, `qemu-${name}`);
      const driverOptions = { images, qemu: { cacheDir: qemuCache } };
      const driver = createDriver(name, driverOptions);
      const probe = await driver.probe();
      if (!probe.usable) {
        console.error(
          `\n!!! ${name}: NOT measured (${probe.reason}); its API warm start is UNVERIFIED here\n`,
        );
        sections[name] = { skipped: probe.reason };
        await driver.close();
        continue;
      }
      const agent = new NodeAgent({
        name: `bench-${name}`,
        etcdEndpoints: [etcd.endpoint],
        driver,
        capacity: { cpuMillis: 64_000, memoryMiB: 65_536 },
        dataDir: join(work, name),
        warmPerImage: 1,
      });
      await agent.start();
      const post = async (id: string): Promise<{ millis: number; record: SandboxRecord }> => {
        const started = performance.now();
        const response = await fetch(`${scheduler.url}/v1/sandboxes?wait=running&timeout=300`, {
          method: "POST",
          headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
          body: JSON.stringify({ id, image, command: ["sleep", "600"], driver: name }),
        });
        const record = (await response.json()) as SandboxRecord;
        const millis = performance.now() - started;
        if (record.status.phase !== "running")
          throw new Error(`${id}: ${JSON.stringify(record.status)}`);
        await fetch(`${scheduler.url}/v1/sandboxes/${id}`, {
          method: "DELETE",
          headers: { authorization: `Bearer ${TOKEN}` },
        });
        return { millis, record };
      };
      // First run of the image: cold (image conversion, and for qemu the boot + snapshot).
      const cold = await post(`${name}-cold`);
      // The bare primitive, set up once the first run made what it needs.
      let primitiveCommand: string;
      let primitiveSample: () => Promise<number>;
      if (name === "qemu") {
        const snapshots = join(qemuCache, "snapshots");
        const snapshot = join(snapshots, (await readdir(snapshots))[0]!);
        const initramfs = join(qemuCache, "initramfs");
        const initrd = join(
          initramfs,
          (await readdir(initramfs)).find((n) => n.endsWith(".cpio"))!,
        );
        const kernel = (await ensureGuestKernel()).path;
        const accel: Accelerator = probe.capabilities.notes.some((n) => /using TCG/.test(n))
          ? "tcg"
          : "kvm";
        const bareDir = join(work, "bare");
        await mkdir(bareDir, { recursive: true });
        primitiveCommand =
          'qemu-system-x86_64 -M microvm … -incoming "exec:cat <snapshot>" + QMP cont + command frame on the serial socket (spawn → command handed to the guest)';
        primitiveSample = async () =>
          (await bareQemuRestore({ kernel, initrd, snapshot, accel, dir: bareDir })).start;
      } else {
        const rootfs = (await images.prepare(image)).rootfs;
        primitiveCommand = `${bwrapTrueCommand} (spawn → exit)`;
        primitiveSample = () => timeSpawn("bwrap", bwrapTrueArgs(rootfs));
      }
      const api: number[] = [];
      const apiDriverMillis: number[] = [];
      const primitive: number[] = [];
      let servedWarm = 0;
      // Interleaved, so drift in the shared machine's load hits both alike.
      for (let i = 0; i < iterations; i++) {
        await driver.warm(image, 1); // the agent refills in the background; make sure it is ready
        const { millis, record } = await post(`${name}-${i}`);
        if (record.status.start === "warm") {
          servedWarm++;
          api.push(millis);
          apiDriverMillis.push(record.status.startMillis ?? NaN);
        }
        primitive.push(await primitiveSample());
      }
      await agent.close();

      // The primitive under the API: the same driver's warm run(), called directly.
      const direct = createDriver(name, driverOptions);
      await direct.probe();
      await direct.prepare(image);
      const runs: number[] = [];
      const spec = sandboxSpecSchema.parse({ image, command: ["sleep", "600"] });
      for (let i = 0; i < iterations; i++) {
        await direct.warm(image, 1);
        const dir = join(work, `direct-${name}-${i}`);
        await mkdir(dir, { recursive: true });
        const started = performance.now();
        const sandbox = await direct.run({
          id: `direct-${i}`,
          spec,
          workDir: dir,
          logFile: join(dir, "log"),
        });
        const millis = performance.now() - started;
        if (sandbox.start === "warm") runs.push(millis);
        await sandbox.stop();
      }
      await direct.close();
      const apiStats = stats(api);
      const directStats = stats(runs);
      const primitiveStats = stats(primitive);
      sections[name] = {
        notes: probe.capabilities.notes,
        // Fresh caches: the first run is a true cold start (image unpack; qemu: boot + snapshot).
        firstRunThroughApi: { millis: Math.round(cold.millis), start: cold.record.status.start },
        warmThroughApi: apiStats,
        primitive: { command: primitiveCommand, millis: primitiveStats },
        warmStartMillisReportedByAgent: stats(apiDriverMillis),
        warmDriverRunDirect: directStats,
        servedWarm: `${servedWarm}/${iterations}`,
        apiOverPrimitiveP50Ratio: ratio(apiStats.p50, primitiveStats.p50),
        apiOverPrimitiveP99Ratio: ratio(apiStats.p99, primitiveStats.p99),
        apiOverDriverP50Ratio: ratio(apiStats.p50, directStats.p50, 10),
        apiOverheadP50Millis: Math.round((apiStats.p50 - directStats.p50) * 100) / 100,
        firstRunToWarmThroughApiRatio: ratio(cold.millis, apiStats.p50, 10),
      };
      console.log(name, JSON.stringify(sections[name], null, 2));
    }
    const result = {
      bench: "api-warm-start",
      date: new Date().toISOString(),
      host: { loadavg1: Math.round(loadavg()[0]! * 100) / 100 },
      what: {
        warmThroughApi:
          "POST /v1/sandboxes?wait=running round trip (HTTP, etcd create, placer bind, agent watch + CAS, driver.run, CAS running, API watch), warm starts only",
        primitive:
          "the bare primitive, sampled interleaved with the API in the same run: process = raw bwrap … /bin/true spawn to exit; qemu = raw qemu -incoming exec:cat <snapshot> + QMP cont, spawn to the command handed to the guest",
        warmDriverRunDirect: "the same driver's run() called directly with a warm pool ready",
      },
      drivers: sections,
    };
    await mkdir(join(__dirname, "results"), { recursive: true });
    await writeFile(
      join(__dirname, "results", "api-warm-start.json"),
      `${JSON.stringify(result, null, 2)}\n`,
    );
  } finally {
    await scheduler.close();
    await etcd.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
