/**
 * Finds the drivers built into this checkout and picks one. Each driver lives in
 * `runtime/node-agent/drivers/<name>.ts` and exports a factory `create<Name>Driver(options?)`;
 * drivers that are not present (or whose probe fails on this host) are skipped with the reason.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type Driver, driverSchema } from "../lib/model";
import type { SandboxDriver } from "./driver";

/** Preference order when picking the best driver: hardware isolation first. */
export const DRIVER_PREFERENCE: readonly Driver[] = ["firecracker", "qemu", "process"];

/** Options passed through to a driver factory (e.g. a cache dir). */
export type DriverOptions = Record<string, unknown>;

type Factory = (options?: DriverOptions) => SandboxDriver;

function factoryOf(name: Driver): Factory | undefined {
  const file = join(__dirname, "drivers", `${name}.ts`);
  if (!existsSync(file)) return undefined;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(file) as Record<string, unknown>;
  const exportName = `create${name[0]!.toUpperCase()}${name.slice(1)}Driver`;
  const factory = mod[exportName] ?? mod.default;
  return typeof factory === "function" ? (factory as Factory) : undefined;
}

/** Create the named driver; a clear error when it is not built in. */
export function createDriver(name: Driver, options?: DriverOptions): SandboxDriver {
  const factory = factoryOf(driverSchema.parse(name));
  if (!factory) {
    throw new Error(
      `driver ${name} is not available in this checkout (no runtime/node-agent/drivers/${name}.ts factory)`,
    );
  }
  return factory(options);
}

/** Probe the drivers in preference order and return the first usable one, with why others were skipped. */
export async function bestDriver(
  options?: DriverOptions,
): Promise<{ driver: SandboxDriver; skipped: string[] }> {
  const skipped: string[] = [];
  for (const name of DRIVER_PREFERENCE) {
    const factory = factoryOf(name);
    if (!factory) {
      skipped.push(`${name}: not built into this checkout`);
      continue;
    }
    const driver = factory(options);
    const probe = await driver.probe();
    if (probe.usable) return { driver, skipped };
    skipped.push(`${name}: ${probe.reason}`);
    await driver.close().catch(() => undefined);
  }
  throw new Error(`no sandbox driver is usable on this host: ${skipped.join("; ")}`);
}
