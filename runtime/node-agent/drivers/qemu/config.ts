/** The `qemu` section of the driver options, validated at the edge. */
import { z } from "zod";
import { formatZodIssues } from "../../../lib/errors";

/** How guests are accelerated; `auto` probes KVM once per host and falls back to TCG. */
export const accelSchema = z.enum(["auto", "kvm", "tcg"]);

/**
 * `$SHARDWORKS_QEMU_ACCEL` (or the given value) as an accelerator choice: undefined when unset,
 * an error naming the variable and the allowed values when it is something else.
 */
export function accelFromEnv(
  value: string | undefined = process.env.SHARDWORKS_QEMU_ACCEL,
): z.infer<typeof accelSchema> | undefined {
  if (value === undefined || value === "") return undefined;
  const parsed = accelSchema.safeParse(value);
  if (!parsed.success) {
    throw new Error(
      `SHARDWORKS_QEMU_ACCEL=${JSON.stringify(value)} is not an accelerator; set it to auto, kvm or tcg (or unset it: auto)`,
    );
  }
  return parsed.data;
}

/** What a node agent may configure for the qemu driver (everything has a default). */
export const qemuDriverConfigSchema = z.strictObject({
  /** QEMU binary; default `$SHARDWORKS_QEMU` or `qemu-system-x86_64`. */
  binary: z.string().min(1).optional(),
  /** Cache root for initramfs archives and snapshots; default `~/.cache/shardworks/qemu`. */
  cacheDir: z.string().min(1).optional(),
  /** `auto` probes KVM once per host and falls back to TCG. */
  accel: accelSchema.optional(),
  kvmProbeTimeoutMs: z.number().int().positive().max(120_000).optional(),
  bootTimeoutMs: z.number().int().positive().max(600_000).optional(),
  /** Address incoming live migrations listen on, e.g. the node's private IP; default 127.0.0.1. */
  migrationListenHost: z.string().min(1).optional(),
  migrationTimeoutMs: z.number().int().positive().max(3_600_000).optional(),
  nice: z.number().int().min(-20).max(19).optional(),
});
export type QemuDriverConfig = z.infer<typeof qemuDriverConfigSchema>;

/** Parses the `qemu` options section, or throws one line per bad field with the fix. */
export function parseQemuDriverConfig(input: unknown): QemuDriverConfig {
  const parsed = qemuDriverConfigSchema.safeParse(input ?? {});
  if (!parsed.success) {
    throw new Error(
      `invalid qemu driver options: ${formatZodIssues(parsed.error, "qemu").join("; ")}`,
    );
  }
  return parsed.data;
}
