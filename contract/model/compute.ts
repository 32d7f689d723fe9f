/** The compute of a sandbox and a node: the drivers that run sandboxes, CPU and memory. */
import { z } from "zod";

/** The VM/sandbox drivers a node agent can run. */
export const Driver = { Firecracker: "firecracker", Qemu: "qemu", Process: "process" } as const;
/** One of the driver names in {@link Driver}. */
export type Driver = (typeof Driver)[keyof typeof Driver];
export const driverSchema = z.enum([Driver.Firecracker, Driver.Qemu, Driver.Process]);
/** What a node agent is told to run: a driver, or `auto` (the strongest usable one). */
export const driverChoiceSchema = z.enum(["auto", ...driverSchema.options]);

/** CPU in millicores and memory in MiB: what a sandbox asks for and what a node offers. */
export const resourcesSchema = z.strictObject({
  cpuMillis: z.number().int().positive().max(256_000),
  memoryMiB: z.number().int().positive().max(1_048_576),
});
export type Resources = z.infer<typeof resourcesSchema>;
