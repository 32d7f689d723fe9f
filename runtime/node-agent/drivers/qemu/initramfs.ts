/**
 * Packs an image's root filesystem plus the guest agent into an initramfs (cpio `newc`), once per
 * image digest, cached. The Debian cloud kernel has virtio-blk/virtio-mmio only as modules, so an
 * initramfs root needs no modules and no disk device.
 *
 * The archive is two cpio archives concatenated — the image's tree, then the agent's (`/init` and
 * `/.shardworks/busybox`) — which the kernel unpacks in order, so the image directory is never
 * copied or modified. The archive is left uncompressed: decompressing under TCG costs more boot time
 * than reading the extra bytes, and warm starts restore a snapshot and never read it again.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";

/** Where the guest agent script lives in this package. */
export const guestAgentPath = join(__dirname, "guest-agent.sh");

/** Static busybox the agent runs on, whatever the image contains (Debian's `busybox-static`). */
export const hostBusybox = process.env.SHARDWORKS_BUSYBOX ?? "/bin/busybox";

/** A hash of the agent script and busybox: part of every cache key, so an agent change rebuilds. */
export async function guestAgentFingerprint(): Promise<string> {
  const hash = createHash("sha256");
  hash.update(await readFile(guestAgentPath));
  hash.update(await readFile(hostBusybox));
  return hash.digest("hex").slice(0, 16);
}

/** Writes the cpio (newc) archive of `dir` to `out`, owned by root, with GNU cpio. */
async function appendCpio(dir: string, out: NodeJS.WritableStream): Promise<void> {
  // `find` lists the tree depth-first with directories before their contents, as cpio wants.
  const find = spawn("find", [".", "-print0"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  const cpio = spawn("cpio", ["--null", "-o", "-H", "newc", "-R", "0:0", "--quiet"], {
    cwd: dir,
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  for (const child of [find, cpio]) {
    child.stderr?.on(
      "data",
      (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2000)),
    );
  }
  const exited = (child: ChildProcess) =>
    new Promise<number>((resolve, reject) => {
      child.once("error", reject);
      child.once("close", (code) => resolve(code ?? -1));
    });
  const [findCode, cpioCode] = await Promise.all([
    exited(find),
    exited(cpio),
    pipeline(find.stdout, cpio.stdin),
    pipeline(cpio.stdout, out, { end: false }),
  ]);
  if (findCode !== 0 || cpioCode !== 0) {
    throw new Error(
      `packing ${dir} into cpio failed (find ${findCode}, cpio ${cpioCode}): ${stderr}`,
    );
  }
}

/**
 * Returns the initramfs of an image, building it the first time. `key` names the image's content
 * (its digest); `rootfs` is the unpacked root filesystem directory.
 */
export async function ensureInitramfs(options: {
  readonly rootfs: string;
  readonly key: string;
  readonly cacheDir: string;
}): Promise<string> {
  const fingerprint = await guestAgentFingerprint();
  const safeKey = options.key.replace(/[^A-Za-z0-9_.-]/g, "_");
  const path = join(options.cacheDir, `${safeKey}-${fingerprint}.cpio`);
  if (
    await stat(path).then(
      (s) => s.isFile(),
      () => false,
    )
  )
    return path;

  await mkdir(options.cacheDir, { recursive: true });
  const agentTree = await mkdtemp(join(options.cacheDir, ".agent-"));
  const partial = `${path}.${process.pid}.partial`;
  try {
    await mkdir(join(agentTree, ".shardworks"));
    await copyFile(hostBusybox, join(agentTree, ".shardworks", "busybox"));
    await chmod(join(agentTree, ".shardworks", "busybox"), 0o755);
    await copyFile(guestAgentPath, join(agentTree, "init"));
    await chmod(join(agentTree, "init"), 0o755);
    const out = createWriteStream(partial);
    await appendCpio(options.rootfs, out);
    await appendCpio(agentTree, out);
    await new Promise<void>((resolve, reject) =>
      out.end((error?: Error | null) => (error ? reject(error) : resolve())),
    );
    // Atomic publish: a concurrent builder's rename wins harmlessly (same content).
    await rename(partial, path);
    return path;
  } finally {
    await rm(agentTree, { recursive: true, force: true });
    await rm(partial, { force: true });
  }
}
