/** What the guest agent runs for a sandbox: the shared launch script, with the guest's defaults. */
import type { SandboxSpec } from "../../../../contract/model";
import { launchScript } from "../launch-script";
import type { QemuImage } from "./images";

/**
 * The launch script for a guest: HOME is /root (the guest runs as root) unless the image sets it,
 * the address space is not capped (the VM's RAM is the limit), and, when given the time, the clock
 * is set first: the guest has no RTC and a restored snapshot's clock is the snapshot's.
 */
export function commandScript(spec: SandboxSpec, image: QemuImage, nowMillis?: number): string {
  const env = ["HOME=/root", ...Object.entries(image.env ?? {}).map(([k, v]) => `${k}=${v}`)];
  const first =
    nowMillis === undefined
      ? []
      : [`/.shardworks/busybox date -u -s @${Math.round(nowMillis / 1000)} >/dev/null 2>&1`];
  return launchScript(
    spec,
    { env, entrypoint: [], cmd: [], workingDir: image.workingDir ?? "/" },
    { first, limitAddressSpace: false },
  );
}
