/**
 * Fixtures of the qemu driver tests: a real busybox root filesystem (Debian's busybox-static), a
 * driver with a private cache (so cold and warm starts are both exercised), and a loud banner when
 * the VMs run under TCG.
 */
import { createHash } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { ExecutionContext } from "ava";
import { sandboxSpecSchema, type SandboxSpec } from "../../../contract/model";
import type { RunRequest } from "../../../runtime/node-agent/driver";
import { QemuDriver, type QemuImage } from "../../../runtime/node-agent/drivers/qemu";

const APPLETS = [
  "sh",
  "echo",
  "cat",
  "sleep",
  "seq",
  "env",
  "ls",
  "printf",
  "true",
  "false",
  "wc",
  "date",
];

/** A directory holding a busybox root filesystem, removed at teardown. */
export async function busyboxRootfs(t: ExecutionContext): Promise<QemuImage> {
  const root = await mkdtemp(join(tmpdir(), "sw-qemu-rootfs-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  await mkdir(join(root, "bin"));
  await mkdir(join(root, "srv"));
  await copyFile("/bin/busybox", join(root, "bin", "busybox"));
  for (const applet of APPLETS) await symlink("busybox", join(root, "bin", applet));
  const digest = createHash("sha256")
    .update(await readFile("/bin/busybox"))
    .update(APPLETS.join(","))
    .digest("hex");
  return {
    digest: `sha256:${digest}`,
    rootfs: root,
    workingDir: "/srv",
    env: { IMAGE_VAR: "from-image" },
  };
}

/** A qemu driver over `image` with a private cache dir; everything it starts dies at teardown. */
export async function qemuDriver(
  t: ExecutionContext,
  image: QemuImage,
  cacheDir?: string,
): Promise<QemuDriver> {
  cacheDir ??= await privateCacheDir(t);
  const driver = new QemuDriver({ images: { resolve: () => Promise.resolve(image) }, cacheDir });
  t.teardown(() => driver.close());
  const probe = await driver.probe();
  if (!probe.usable) throw new Error(`qemu driver unusable here: ${probe.reason}`);
  const tcg = probe.capabilities.notes.find((n) => /TCG/.test(n));
  if (tcg) {
    const banner = `\n${"!".repeat(78)}\n!! qemu tests run under TCG (software emulation), NOT KVM: ${tcg}\n!! Hardware-accelerated (KVM) runs are unverified on this host.\n${"!".repeat(78)}\n`;
    console.error(banner);
    t.log(`UNDER TCG: ${tcg}`);
  }
  return driver;
}

/** A fresh cache dir (initramfs, snapshots), removed at teardown, so cold starts really happen. */
export async function privateCacheDir(t: ExecutionContext): Promise<string> {
  const cacheDir = await mkdtemp(join(tmpdir(), "sw-qemu-cache-"));
  t.teardown(() => rm(cacheDir, { recursive: true, force: true }));
  return cacheDir;
}

/** A run request for `command` with its own log file. */
export async function runRequest(
  t: ExecutionContext,
  id: string,
  command: string[],
  extra: Partial<SandboxSpec> = {},
): Promise<RunRequest> {
  const workDir = await mkdtemp(join(tmpdir(), `sw-qemu-${id}-`));
  t.teardown(() => rm(workDir, { recursive: true, force: true }));
  return {
    id,
    workDir,
    logFile: join(workDir, "log"),
    spec: sandboxSpecSchema.parse({ image: "oci:/test/busybox", command, ...extra }),
  };
}

/** The log file's content ("" while it does not exist). */
export async function readLog(file: string): Promise<string> {
  return readFile(file, "utf8").catch(() => "");
}

/** The counter values ("tick N") printed so far. */
export async function ticks(file: string): Promise<number[]> {
  return [...(await readLog(file)).matchAll(/^tick (\d+)$/gm)].map((m) => Number(m[1]));
}

/** Waits until the log holds at least `count` ticks (TCG is slow; generous deadline). */
export async function waitForTicks(
  file: string,
  count: number,
  timeoutMs = 60_000,
): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seen = await ticks(file);
    if (seen.length >= count) return seen;
    if (Date.now() > deadline)
      throw new Error(`only ${seen.length} ticks in ${file} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** A guest command printing an increasing counter every 200 ms, forever. */
export const COUNTER = ["sh", "-c", 'i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.2; done'];
