/**
 * The shared driver conformance suite against the qemu driver, built through the driver factory
 * with the real image store: real microVMs (under TCG on hosts where KVM hangs; the suite's probe
 * notes and the banner below say so).
 */
import { Driver } from "../../../contract/model";
import { createDriver } from "../../../runtime/node-agent/drivers";
import { ImageStore } from "../../../runtime/node-agent/images";
import { driverConformance } from "./conformance";

driverConformance(
  Driver.Qemu,
  async ({ imageCacheDir }) => {
    const driver = createDriver(Driver.Qemu, {
      images: new ImageStore({ cacheDir: imageCacheDir }),
      // Initramfs archives and snapshots next to the suite's image cache: fresh each run, so the
      // cold start really is cold; removed with it.
      qemu: { cacheDir: `${imageCacheDir}-qemu` },
    });
    const probe = await driver.probe();
    const tcg = probe.usable && probe.capabilities.notes.find((n) => /TCG/.test(n));
    if (tcg) {
      console.error(
        `\n${"!".repeat(78)}\n!! qemu conformance runs under TCG (software emulation), NOT KVM: ${tcg}\n${"!".repeat(78)}\n`,
      );
    }
    return driver;
  },
  // TCG boots take seconds, more on a loaded 2-core host.
  { sandboxTimeoutMillis: 120_000 },
);
