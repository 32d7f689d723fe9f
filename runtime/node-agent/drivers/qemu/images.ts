/**
 * Images as the qemu driver needs them: an unpacked root filesystem and its identity, where they
 * come from (the node agent's image store), and the guest RAM an image's initramfs needs.
 */
import type { RegistryAccess } from "../../../../contract/model";
import type { ImageStore } from "../../images";
import { MIN_MEMORY_MIB } from "./host";

/** An image as the qemu driver needs it: an unpacked root filesystem and its identity. */
export interface QemuImage {
  /** Content digest (`sha256:…`): the key of every cache (initramfs, snapshot). */
  readonly digest: string;
  /** The unpacked root filesystem directory. */
  readonly rootfs: string;
  /** The image config's environment (`KEY` → value); the sandbox's env overrides it. */
  readonly env?: Readonly<Record<string, string>>;
  /** The image config's working directory. */
  readonly workingDir?: string;
}

/** Turns an image reference into a root filesystem (the node agent's image store). */
export interface QemuImageSource {
  resolve(image: string, access?: RegistryAccess): Promise<QemuImage>;
}

/** An image ready to boot: its initramfs and the guest RAM it needs. */
export interface PreparedQemuImage {
  readonly image: QemuImage;
  readonly initrd: string;
  /** Guest RAM this image needs at least: the initramfs is unpacked into RAM. */
  readonly minMemoryMiB: number;
}

/**
 * Guest RAM for an initramfs of `bytes`: while the kernel unpacks it, the archive and its files are
 * both in RAM, and the root tmpfs may only fill half of RAM; then the kernel (~48 MiB here) and
 * the command need room. 2× was measured too little (60 MiB image: "Initramfs unpacking failed:
 * write error"); 3× + 96 MiB, rounded up to 32 MiB, boots it.
 */
export function guestMemoryFor(bytes: number): number {
  const needed = Math.ceil((3 * bytes) / 2 ** 20) + 96;
  return Math.max(MIN_MEMORY_MIB, Math.ceil(needed / 32) * 32);
}

/** An {@link QemuImageSource} backed by the shared image store (unpacks once per digest). */
export function imageStoreSource(store: ImageStore): QemuImageSource {
  return {
    async resolve(image: string, access?: RegistryAccess): Promise<QemuImage> {
      const prepared = await store.prepare(image, access);
      const env: Record<string, string> = {};
      for (const entry of prepared.config.env) {
        const eq = entry.indexOf("=");
        if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
      }
      return {
        digest: prepared.manifestDigest,
        rootfs: prepared.rootfs,
        env,
        ...(prepared.config.workingDir ? { workingDir: prepared.config.workingDir } : {}),
      };
    },
  };
}
