/**
 * The guest kernel: Debian's `linux-image-<abi>-cloud-amd64`, downloaded once with `apt-get
 * download`, unpacked with `dpkg-deb -x` and cached under `~/.cache/shardworks/kernel/`. The
 * Debian tools do the fetching and verifying (apt checks the archive's signatures), so nothing here
 * parses .deb files by hand.
 */
import { execFile } from "node:child_process";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { logger } from "../../../lib/logger";

const run = promisify(execFile);
const log = logger.child({ component: "qemu-kernel" });

/** The default cache root of every Shardworks artefact on this host. */
export function shardworksCacheDir(): string {
  return process.env.SHARDWORKS_CACHE ?? join(homedir(), ".cache", "shardworks");
}

/** A guest kernel ready to pass to `qemu -kernel`. */
export interface GuestKernel {
  /** Path of `vmlinuz-…`. */
  readonly path: string;
  /** Package name, e.g. `linux-image-6.1.0-56-cloud-amd64`. */
  readonly packageName: string;
}

/** Options for {@link ensureGuestKernel}. */
export interface EnsureKernelOptions {
  /** Cache directory; default `~/.cache/shardworks/kernel`. */
  cacheDir?: string;
  /** Called with a human-readable progress line (download, unpack). Default: logged at info. */
  onProgress?: (line: string) => void;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function findVmlinuz(dir: string): Promise<string | undefined> {
  const boot = join(dir, "boot");
  const names = await readdir(boot).catch(() => [] as string[]);
  const name = names.find((n) => n.startsWith("vmlinuz-"));
  return name === undefined ? undefined : join(boot, name);
}

/** The concrete package behind the `linux-image-cloud-amd64` meta-package, from apt's index. */
async function currentCloudKernelPackage(): Promise<string> {
  const { stdout } = await run("apt-cache", ["depends", "linux-image-cloud-amd64"]);
  const match = /Depends:\s+(linux-image-[0-9][^\s]*-cloud-amd64)\b/.exec(stdout);
  if (!match?.[1]) {
    throw new Error(
      "cannot find the Debian cloud kernel package: `apt-cache depends linux-image-cloud-amd64` " +
        "names no linux-image-*-cloud-amd64; run `apt-get update` or set SHARDWORKS_QEMU_KERNEL " +
        "to a vmlinuz file",
    );
  }
  return match[1];
}

/**
 * Returns the cached guest kernel, downloading and unpacking it the first time. Honours
 * `SHARDWORKS_QEMU_KERNEL` (a vmlinuz path) to use a kernel of your own.
 */
export async function ensureGuestKernel(options: EnsureKernelOptions = {}): Promise<GuestKernel> {
  const override = process.env.SHARDWORKS_QEMU_KERNEL;
  if (override) {
    if (!(await exists(override))) {
      throw new Error(`SHARDWORKS_QEMU_KERNEL=${override}: no such file; unset it or fix the path`);
    }
    return { path: override, packageName: "custom" };
  }
  const cacheDir = options.cacheDir ?? join(shardworksCacheDir(), "kernel");
  const progress = options.onProgress ?? ((line: string) => log.info(line));
  await mkdir(cacheDir, { recursive: true });

  // Reuse any kernel unpacked before, so a host without network keeps working.
  const unpacked = (await readdir(cacheDir)).filter((n) => n.startsWith("linux-image-")).sort();
  for (const name of unpacked.reverse()) {
    const dir = join(cacheDir, name);
    if ((await stat(dir)).isDirectory()) {
      const vmlinuz = await findVmlinuz(dir);
      if (vmlinuz) return { path: vmlinuz, packageName: name };
    }
  }

  const packageName = await currentCloudKernelPackage();
  progress(`guest kernel: downloading ${packageName} (once; cached in ${cacheDir})`);
  const work = join(cacheDir, `.download-${process.pid}`);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  try {
    await run("apt-get", ["download", packageName], { cwd: work, maxBuffer: 16 << 20 });
    const deb = (await readdir(work)).find((n) => n.endsWith(".deb"));
    if (!deb) throw new Error(`apt-get download ${packageName} produced no .deb file`);
    progress(`guest kernel: unpacking ${deb}`);
    const tree = join(work, "tree");
    await run("dpkg-deb", ["-x", join(work, deb), tree]);
    // Only boot/vmlinuz is used: the initramfs root loads no modules, so drop the ~100 MB of them.
    await rm(join(tree, "lib"), { recursive: true, force: true });
    await rm(join(tree, "usr"), { recursive: true, force: true });
    const target = join(cacheDir, packageName);
    await rm(target, { recursive: true, force: true });
    // Atomic publish: concurrent callers either see the whole tree or none of it.
    await rename(tree, target);
    const vmlinuz = await findVmlinuz(target);
    if (!vmlinuz) throw new Error(`${packageName} contains no boot/vmlinuz-*`);
    progress(`guest kernel: ready at ${vmlinuz}`);
    return { path: vmlinuz, packageName };
  } catch (error) {
    throw new Error(`cannot fetch the guest kernel ${packageName}`, { cause: error });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
