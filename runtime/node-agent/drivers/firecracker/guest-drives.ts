/**
 * The guest's drives: `agent` (root, read-only) holds busybox and `/init`, the guest agent;
 * `image` (read-only) is an image's root filesystem as ext4. Both are built with `mkfs.ext4 -d`.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { chmod, copyFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** The guest agent, `/init` of the agent drive. */
export const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin 2>/dev/null
export PATH=/bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mount -o ro /dev/vdb /image
mount -t proc proc /image/proc
mount -t devtmpfs dev /image/dev
mount -t tmpfs tmp /image/tmp
mount -t tmpfs work /image/work
mount -t tmpfs shardworks /image/.shardworks
cp /bin/busybox /image/.shardworks/busybox
stty -echo 2>/dev/null
echo SHARDWORKS_READY
read -r line
echo "$line" | base64 -d > /image/.shardworks/script
echo SHARDWORKS_STARTED
chroot /image /.shardworks/busybox sh /.shardworks/script
echo "SHARDWORKS_EXIT=$?"
reboot -f
`;

/** Builds the agent drive `file` (16 MiB) with busybox from `busyboxPath`, staged in `staging`. */
export async function buildAgentDrive(
  staging: string,
  file: string,
  busyboxPath: string,
): Promise<void> {
  for (const sub of ["bin", "proc", "dev", "run", "image"])
    await mkdir(join(staging, sub), { recursive: true });
  await copyFile(busyboxPath, join(staging, "bin", "busybox"));
  await writeFile(join(staging, "init"), guestInit);
  await chmod(join(staging, "init"), 0o755);
  await mkfsExt4(staging, file, 16);
}

/** Builds an image drive `file` from `rootfs`: 1.5× its size plus 16 MiB for the file system. */
export async function buildImageDrive(rootfs: string, file: string): Promise<void> {
  const { stdout } = await run("du", ["-sm", rootfs]).catch(() => ({ stdout: "64" }));
  const size = Number(stdout.split("\t")[0]);
  await mkfsExt4(rootfs, file, Math.ceil((Number.isFinite(size) ? size : 64) * 1.5) + 16);
}

const run = promisify(execFile);

async function mkfsExt4(sourceDir: string, file: string, sizeMiB: number): Promise<void> {
  try {
    await run("mkfs.ext4", ["-q", "-F", "-d", sourceDir, file, `${sizeMiB}M`]);
  } catch (error) {
    const detail = (error as { stderr?: string }).stderr?.trim() || (error as Error).message;
    throw new Error(`mkfs.ext4 could not build ${file} (${detail}); install e2fsprogs`, {
      cause: error,
    });
  }
}
