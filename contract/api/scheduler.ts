/**
 * What the scheduler API answers besides the shard registry: `/healthz`, the sandboxes, the
 * nodes. Records come back as etcd holds them (`../model`); unknown top-level fields are kept out
 * of the way, not refused, so a client still reads a newer scheduler's answer.
 */
import { z } from "zod";
import {
  nodeRecordSchema,
  sandboxRecordSchema,
  sandboxSpecSchema,
  sandboxStatusSchema,
} from "../model";

/** `GET /healthz`: the scheduler reaches etcd; `version` when it knows the one it runs. */
export const healthzSchema = z.object({ ok: z.literal(true), version: z.string().optional() });
export type Healthz = z.infer<typeof healthzSchema>;

/**
 * A sandbox as `/v1/sandboxes` answers it, read tolerantly below the top level too: a newer
 * scheduler's extra fields in `spec` or `status`, or a phase this client does not know, must not
 * turn an answer that succeeded (a sandbox created) into a failure.
 */
export const sandboxViewSchema = sandboxRecordSchema
  .extend({
    spec: sandboxSpecSchema.loose(),
    status: sandboxStatusSchema.extend({ phase: z.string(), start: z.string().optional() }).loose(),
  })
  .loose();
export type SandboxView = z.infer<typeof sandboxViewSchema>;

/** `GET /v1/sandboxes`: the sandboxes the token may see. */
export const sandboxListSchema = z.object({ items: z.array(sandboxViewSchema) });

/** A node as `GET /v1/nodes` answers it: its record and what is allocated on it. */
export const nodeViewSchema = nodeRecordSchema
  .extend({
    // What runs there now, so zero is an answer (unlike a sandbox's or a node's resources).
    allocated: z.object({
      cpuMillis: z.number().int().nonnegative(),
      memoryMiB: z.number().int().nonnegative(),
      sandboxes: z.number().int().nonnegative(),
    }),
  })
  .loose();
export type NodeView = z.infer<typeof nodeViewSchema>;

/** `GET /v1/nodes` (platform token only). */
export const nodeListSchema = z.object({ items: z.array(nodeViewSchema) });
