/** `nodes/<node>`: the record a node agent registers, and the taints a node may carry. */
import { z } from "zod";
import { driverSchema, resourcesSchema } from "./compute";
import { labelKeySchema, labelsSchema, labelValueSchema, nodeName } from "./names";

/** A Kubernetes-style taint on a node; a sandbox must tolerate it to be placed there. */
export const taintSchema = z.strictObject({
  key: labelKeySchema,
  value: labelValueSchema.default(""),
  effect: z.enum(["NoSchedule", "PreferNoSchedule"]).default("NoSchedule"),
});

/** `nodes/<node>`: written by a node agent, bound to its lease (liveness). */
export const nodeRecordSchema = z.strictObject({
  name: nodeName,
  /** host:port of the node agent's HTTP API (logs, migration). */
  address: z.string().min(1),
  driver: driverSchema,
  /** True only for drivers that give hardware isolation (firecracker, qemu). */
  hardwareIsolated: z.boolean(),
  capacity: resourcesSchema,
  labels: labelsSchema().default({}),
  taints: z.array(taintSchema).default([]),
  registeredAt: z.iso.datetime(),
});
export type NodeRecord = z.infer<typeof nodeRecordSchema>;
