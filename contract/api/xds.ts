/**
 * `GET /v1/xds/clients[?nodeId=<id>]`: which xDS clients hold which configuration, across every
 * routing controller replica (each one's CSDS, in one compact report).
 */
import { z } from "zod";

/** One resource a client holds (or asked for), as CSDS reports it. */
export const xdsResourceStatusSchema = z.object({
  /** The resource type's short name: `Listener`, `RouteConfiguration`, `Cluster`, … */
  type: z.string(),
  /** "" stands for the whole type when the client holds none of it. */
  name: z.string(),
  version: z.string(),
  /** SYNCED, NOT_SENT, STALE or ERROR (the management server's view). */
  status: z.string(),
  /** ACKED, NACKED, REQUESTED or DOES_NOT_EXIST (what the client did). */
  client: z.string(),
  /** The client's reason, after a NACK. */
  error: z.string().optional(),
});
export type XdsResourceStatus = z.infer<typeof xdsResourceStatusSchema>;

/** One xDS client (one ADS stream). */
export const xdsClientStatusSchema = z.object({
  node: z.object({ id: z.string(), cluster: z.string() }),
  resources: z.array(xdsResourceStatusSchema),
});
export type XdsClientStatus = z.infer<typeof xdsClientStatusSchema>;

/** One routing controller replica and its clients, or why it did not answer. */
export const routerStatusSchema = z.intersection(
  z.object({ name: z.string(), address: z.string(), version: z.string().optional() }),
  z.union([z.object({ clients: z.array(xdsClientStatusSchema) }), z.object({ error: z.string() })]),
);
export type RouterStatus = z.infer<typeof routerStatusSchema>;

/** The body of `GET /v1/xds/clients`. */
export const xdsClientsReportSchema = z.object({ routers: z.array(routerStatusSchema) });
export type XdsClientsReport = z.infer<typeof xdsClientsReportSchema>;
