/** Adapts the node agent's image store to what the qemu driver needs from an image. */
import type { RegistryAccess } from "../../../lib/model";
import type { ImageStore } from "../../images";
import type { QemuImage, QemuImageSource } from "./driver";

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
