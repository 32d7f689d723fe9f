/**
 * The qemu driver on real QEMU microVMs (TCG here; the fixtures say so loudly): cold boot, the
 * snapshot it leaves behind, warm restores, the warm pool, output/exit code/env through the guest
 * agent, stop, and clear errors for what it cannot do.
 */
import test from "ava";
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { readdir, rm, stat, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import { QemuDriver } from "../../../runtime/node-agent/drivers/qemu";
import {
  busyboxRootfs,
  COUNTER,
  privateCacheDir,
  qemuDriver,
  readLog,
  runRequest,
  waitForTicks,
} from "./qemu-fixtures";

test.serial(
  "first run boots cold and leaves a snapshot; later runs restore it warm, with output, env and exit code",
  async (t) => {
    const image = await busyboxRootfs(t);
    const driver = await qemuDriver(t, image);
    const command = [
      "sh",
      "-c",
      'echo "out $GREETING $IMAGE_VAR in $(pwd)"; echo "to stderr" >&2; exit 7',
    ];
    const env = { GREETING: 'it\'s "quoted" $HOME `x`' };

    const first = await runRequest(t, "cold-1", command, { env });
    const cold = await driver.run(first);
    t.teardown(() => cold.stop());
    t.is(cold.start, "cold");
    t.deepEqual(await cold.exit, { kind: "exited", code: 7 });
    const expected = `out it's "quoted" $HOME \`x\` from-image in /srv\nto stderr\n`;
    t.is(await readLog(first.logFile), expected);

    const warmMillis: number[] = [];
    for (const id of ["warm-1", "warm-2"]) {
      const request = await runRequest(t, id, command, { env });
      const warm = await driver.run(request);
      t.teardown(() => warm.stop());
      t.is(warm.start, "warm");
      t.deepEqual(await warm.exit, { kind: "exited", code: 7 });
      t.is(await readLog(request.logFile), expected);
      warmMillis.push(warm.startMillis);
    }
    t.log(
      `cold start ${Math.round(cold.startMillis)} ms; warm starts ${warmMillis.map(Math.round).join(", ")} ms`,
    );
    t.true(
      warmMillis.every((ms) => ms < cold.startMillis),
      "a warm start was not faster than the cold one",
    );
  },
);

test.serial(
  "warm() builds the snapshot and a pool of paused VMs; a run takes one and the pool refills",
  async (t) => {
    const image = await busyboxRootfs(t);
    const cacheDir = await privateCacheDir(t);
    const driver = await qemuDriver(t, image, cacheDir);
    await driver.warm("oci:/test/busybox", 1);
    const request = await runRequest(t, "pooled", ["sh", "-c", "echo pooled; exit 0"]);
    const sandbox = await driver.run(request);
    t.is(sandbox.start, "warm");
    t.log(`start from the pool: ${Math.round(sandbox.startMillis)} ms`);
    t.deepEqual(await sandbox.exit, { kind: "exited", code: 0 });
    t.is(await readLog(request.logFile), "pooled\n");
    // A second run is warm too, from the refilled pool or the snapshot.
    const again = await runRequest(t, "pooled-2", ["true"]);
    const second = await driver.run(again);
    t.is(second.start, "warm");
    t.deepEqual(await second.exit, { kind: "exited", code: 0 });

    // Release (what the agent does for an idle image): the paused VMs are gone, their QEMU
    // processes too; the snapshot stays, so the next run is still warm.
    await driver.warm("oci:/test/busybox", 1);
    t.is(driver.pooled(), 1);
    t.is(qemuProcessesUsing(cacheDir).length, 1, "one paused VM in the pool");
    await driver.warm("oci:/test/busybox", 0);
    t.is(driver.pooled(), 0);
    t.deepEqual(qemuProcessesUsing(cacheDir), [], "no QEMU of the pool is left");
    const after = await runRequest(t, "after-release", ["true"]);
    const third = await driver.run(after);
    t.is(third.start, "warm", "restored from the snapshot");
    t.deepEqual(await third.exit, { kind: "exited", code: 0 });
  },
);

/** pids of QEMU processes whose command line mentions `dir` (their snapshot and initramfs). */
function qemuProcessesUsing(dir: string): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^[0-9]+$/.test(entry))
    .filter((pid) => {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
        return cmdline.startsWith("qemu-system") && cmdline.includes(dir);
      } catch {
        return false;
      }
    })
    .map(Number);
}

test.serial("stop() ends a command that would run forever and frees its VM", async (t) => {
  const image = await busyboxRootfs(t);
  const driver = await qemuDriver(t, image);
  const request = await runRequest(t, "forever", COUNTER);
  const sandbox = await driver.run(request);
  t.teardown(() => sandbox.stop());
  await waitForTicks(request.logFile, 2);
  await sandbox.stop();
  await sandbox.stop(); // idempotent
  t.deepEqual(await sandbox.exit, { kind: "failed", reason: "stopped" });
  await t.throwsAsync(driver.migrate("forever", { host: "127.0.0.1", port: 1 }), {
    message: /forever is not running on this node/,
  });
});

test.serial(
  "a missing command exits 127 with the shell's message; bad env names and networking are refused clearly",
  async (t) => {
    const image = await busyboxRootfs(t);
    const driver = await qemuDriver(t, image);
    const missing = await runRequest(t, "missing", ["no-such-binary", "x"]);
    const sandbox = await driver.run(missing);
    t.deepEqual(await sandbox.exit, { kind: "exited", code: 127 });
    t.regex(await readLog(missing.logFile), /no-such-binary: not found/);

    const badEnv = await runRequest(t, "bad-env", ["true"], { env: { "1BAD-NAME": "x" } });
    await t.throwsAsync(driver.run(badEnv), {
      message: /spec\.env\.1BAD-NAME: must be a shell variable name/,
    });
    const network = await runRequest(t, "net", ["true"], { network: true });
    await t.throwsAsync(driver.run(network), {
      message: /spec\.network\/spec\.ports: the qemu driver gives guests no network/,
    });
  },
);

test.serial("probe reports a missing QEMU binary as unusable, with the fix", async (t) => {
  const image = await busyboxRootfs(t);
  const driver = new QemuDriver({
    images: { resolve: () => Promise.resolve(image) },
    binary: "/nonexistent/qemu-system-x86_64",
  });
  t.teardown(() => driver.close());
  const probe = await driver.probe();
  t.false(probe.usable);
  if (!probe.usable) t.regex(probe.reason, /not runnable: install Debian's qemu-system-x86/);
});

test.serial(
  "the initramfs of an image is built once per digest and survives a driver restart",
  async (t) => {
    const image = await busyboxRootfs(t);
    const cacheDir = await privateCacheDir(t);
    const driver = await qemuDriver(t, image, cacheDir);
    await driver.prepare("oci:/test/busybox");
    await driver.prepare("oci:/test/busybox");
    const archives = async () =>
      (await readdir(join(cacheDir, "initramfs"))).filter((name) => name.endsWith(".cpio"));
    const built = await archives();
    t.is(built.length, 1);
    t.true(built[0]!.startsWith(image.digest.replace(":", "_")));
    const mtime = (await stat(join(cacheDir, "initramfs", built[0]!))).mtimeMs;
    await driver.close();

    const restarted = await qemuDriver(t, image, cacheDir);
    await restarted.prepare("oci:/test/busybox");
    t.deepEqual(await archives(), built);
    t.is(
      (await stat(join(cacheDir, "initramfs", built[0]!))).mtimeMs,
      mtime,
      "the archive was rebuilt",
    );
  },
);

test.serial("an image bigger than the default guest RAM gets enough RAM to boot", async (t) => {
  const image = await busyboxRootfs(t);
  // 60 MiB of data: the initramfs alone would not fit twice into 128 MiB with the kernel.
  await writeFile(join(image.rootfs, "srv", "big"), Buffer.alloc(60 * 2 ** 20, 7));
  const big = { ...image, digest: `${image.digest}-big` };
  const driver = await qemuDriver(t, big);
  const request = await runRequest(t, "big", ["sh", "-c", "wc -c < /srv/big"]);
  const sandbox = await driver.run(request);
  t.deepEqual(await sandbox.exit, { kind: "exited", code: 0 });
  t.is((await readLog(request.logFile)).trim(), String(60 * 2 ** 20));
});

test.serial(
  "the guest's clock is the host's, after a cold boot and after a warm restore",
  async (t) => {
    const image = await busyboxRootfs(t);
    const driver = await qemuDriver(t, image);
    for (const expected of ["cold", "warm"] as const) {
      const request = await runRequest(t, `clock-${expected}`, ["date", "+%s"]);
      const sandbox = await driver.run(request);
      t.is(sandbox.start, expected);
      t.deepEqual(await sandbox.exit, { kind: "exited", code: 0 });
      const guest = Number((await readLog(request.logFile)).trim());
      const skew = Math.abs(guest - Date.now() / 1000);
      t.log(`${expected}: guest clock ${guest}, skew ${skew.toFixed(1)} s`);
      t.true(skew < 5, `${expected} guest clock is off by ${skew} s`);
    }
  },
);

test.serial(
  "a snapshot QEMU cannot load is dropped: that start is cold and retakes it",
  async (t) => {
    const image = await busyboxRootfs(t);
    const cacheDir = await privateCacheDir(t);
    const driver = await qemuDriver(t, image, cacheDir);
    const first = await driver.run(await runRequest(t, "snap-1", ["true"]));
    t.is(first.start, "cold");
    await first.exit;
    const [snapshot] = await readdir(join(cacheDir, "snapshots"));
    await writeFile(join(cacheDir, "snapshots", snapshot!), "not a QEMU migration stream");

    const request = await runRequest(t, "snap-2", ["echo", "still works"]);
    const second = await driver.run(request);
    t.is(second.start, "cold");
    t.deepEqual(await second.exit, { kind: "exited", code: 0 });
    t.is(await readLog(request.logFile), "still works\n");
    const third = await driver.run(await runRequest(t, "snap-3", ["true"]));
    t.is(third.start, "warm", "the retaken snapshot serves the next start");
    t.deepEqual(await third.exit, { kind: "exited", code: 0 });
  },
);

test.serial("QEMU dies with its node agent, even on kill -9", async (t) => {
  const image = await busyboxRootfs(t);
  const cacheDir = await privateCacheDir(t);
  const { workDir } = await runRequest(t, "orphan", ["true"]);
  const agent = spawn(
    process.execPath,
    [
      "--import=tsx",
      join(__dirname, "qemu-child.ts"),
      image.rootfs,
      image.digest,
      cacheDir,
      workDir,
    ],
    { env: { ...process.env, SHARDWORKS_LOG_LEVEL: "info" }, stdio: ["ignore", "pipe", "inherit"] },
  );
  t.teardown(() => agent.kill("SIGKILL"));
  const qemuPid = await new Promise<number>((resolve, reject) => {
    let out = "";
    agent.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const match = /"pid":(\d+),"msg":"qemu sandbox started"/.exec(out);
      if (match) resolve(Number(match[1]));
    });
    agent.once("exit", (code) =>
      reject(new Error(`the agent exited (${code}) before starting QEMU: ${out}`)),
    );
  });
  const alive = (pid: number) => {
    try {
      // A zombie still answers kill(0); /proc says whether it is really running.
      return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
    } catch {
      return false;
    }
  };
  t.true(alive(qemuPid), "QEMU runs while its agent does");
  // The killed agent cannot remove its QEMU's socket dir; this test does (path from QEMU's argv).
  const socketDir = /unix:(\/[^,\0]+)\/qmp\.sock/.exec(
    readFileSync(`/proc/${qemuPid}/cmdline`, "utf8"),
  )?.[1];
  if (socketDir) t.teardown(() => rm(socketDir, { recursive: true, force: true }));
  process.kill(agent.pid!, "SIGKILL");
  const deadline = Date.now() + 5000;
  while (alive(qemuPid) && Date.now() < deadline) await sleep(50);
  t.false(alive(qemuPid), `QEMU ${qemuPid} outlived its killed agent`);
});
