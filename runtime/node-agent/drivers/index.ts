/**
 * The sandbox drivers by name: `createDriver(name, options)` builds one and
 * `bestAvailableDriver()` probes firecracker → qemu → process and returns the first usable one.
 */
import { Driver } from "../../../contract/model";
import type { DriverCapabilities, SandboxDriver } from "../driver";
import { ImageStore, type ImageStoreOptions } from "../images";
import { createFirecrackerDriver, type FirecrackerDriverOptions } from "./firecracker";
import { createProcessDriver, type ProcessDriverOptions } from "./process";
import { imageStoreSource, parseQemuDriverConfig, QemuDriver } from "./qemu";

/** Options for any driver; each driver reads its own section. */
export interface DriverOptions {
  /** One image store shared by the drivers created with these options. */
  readonly images?: ImageStore;
  readonly imageStore?: ImageStoreOptions;
  readonly process?: Omit<ProcessDriverOptions, "images" | "imageStore">;
  readonly firecracker?: Omit<FirecrackerDriverOptions, "images" | "imageStore">;
  /**
   * Untyped sections, validated by their driver when it is built: `qemu` (by
   * `parseQemuDriverConfig`, which names a bad field); other keys are ignored.
   */
  readonly [driver: string]: unknown;
}

/** Builds a driver from options. */
export type DriverFactory = (options: DriverOptions) => SandboxDriver;

/** The driver factories, one per {@link Driver}: a new driver is an entry here. */
const factories = new Map<Driver, DriverFactory>([
  [
    Driver.Firecracker,
    (options) => createFirecrackerDriver({ ...options.firecracker, images: imagesOf(options) }),
  ],
  [
    Driver.Process,
    (options) => createProcessDriver({ ...options.process, images: imagesOf(options) }),
  ],
  [
    Driver.Qemu,
    (options) =>
      new QemuDriver({
        ...parseQemuDriverConfig(options.qemu),
        images: imageStoreSource(imagesOf(options)),
      }),
  ],
]);

/** The order `bestAvailableDriver` tries: strongest isolation first. */
export const driverPreference: readonly Driver[] = [
  Driver.Firecracker,
  Driver.Qemu,
  Driver.Process,
];

/** The names of the registered drivers. */
export function registeredDrivers(): Driver[] {
  return driverPreference.filter((name) => factories.has(name));
}

/** Builds the named driver, or throws naming the registered ones. */
export function createDriver(name: Driver, options: DriverOptions = {}): SandboxDriver {
  const factory = factories.get(name);
  if (!factory) {
    throw new Error(
      `driver "${name}" is not available in this build; registered: ${registeredDrivers().join(", ")}`,
    );
  }
  return factory(options);
}

/** The first usable driver in {@link driverPreference}, plus why the stronger ones were passed over. */
export interface BestDriver {
  readonly driver: SandboxDriver;
  readonly capabilities: DriverCapabilities;
  readonly skipped: readonly { readonly driver: Driver; readonly reason: string }[];
}

/** Probes firecracker → qemu → process and returns the first usable driver (the others are closed). */
export async function bestAvailableDriver(options: DriverOptions = {}): Promise<BestDriver> {
  const shared = { ...options, images: imagesOf(options) };
  const skipped: { driver: Driver; reason: string }[] = [];
  for (const name of driverPreference) {
    const factory = factories.get(name);
    if (!factory) {
      skipped.push({ driver: name, reason: "not registered in this build" });
      continue;
    }
    const driver = factory(shared);
    const probe = await driver
      .probe()
      .catch((error: unknown) => ({ usable: false as const, reason: String(error) }));
    if (probe.usable) return { driver, capabilities: probe.capabilities, skipped };
    skipped.push({ driver: name, reason: probe.reason });
    await driver.close();
  }
  throw new Error(
    `no sandbox driver is usable here: ${skipped.map((s) => `${s.driver}: ${s.reason}`).join("; ")}`,
  );
}

function imagesOf(options: DriverOptions): ImageStore {
  return options.images ?? new ImageStore(options.imageStore);
}

export { createProcessDriver, ProcessDriver } from "./process";
export type { ProcessDriverOptions } from "./process";
export { QemuDriver } from "./qemu";
export type { QemuDriverConfig } from "./qemu";
export { createFirecrackerDriver, FirecrackerDriver, firecrackerAbsence } from "./firecracker";
export type { FirecrackerDriverOptions } from "./firecracker";
export { FirecrackerApi, FirecrackerApiError } from "./firecracker";
