/** `routers/<name>`: the record a routing controller replica registers. */
import { z } from "zod";
import { nodeName } from "./names";

/**
 * `routers/<name>`: written by a routing controller replica, bound to its lease, so the scheduler
 * can ask every replica which xDS clients hold which configuration (CSDS).
 */
// Not strict, unlike the other records: a newer controller may add a field, and an older
// scheduler must still count that replica rather than skip it (mixed versions during a rollout).
export const routerRecordSchema = z.object({
  /** The replica's name (its pod name in a cluster). */
  name: nodeName,
  /** host:port of its ADS/CSDS server, as the scheduler reaches it. */
  address: z.string().min(1),
  /** The runtime version it runs, when known (the image tag). */
  version: z.string().min(1).optional(),
  startedAt: z.iso.datetime(),
});
export type RouterRecord = z.infer<typeof routerRecordSchema>;
