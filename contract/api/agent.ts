/**
 * The node agent API's requests and answers (`runtime/node-agent/http.ts` serves them, the
 * scheduler's `agent-client.ts` calls them): the three steps of a live migration.
 */
import { z } from "zod";

const port = z.number().int().min(1).max(65535);

/** `POST /v1/sandboxes/<id>/migrate`: where the source sends the VM's state. */
export const migrateRequestSchema = z.strictObject({ host: z.string().min(1), port });
/** The answer of `POST /v1/sandboxes/<id>/accept-migration`: the port the target listens on. */
export const acceptMigrationReplySchema = z.object({ port });
/** The answer of `POST /v1/sandboxes/<id>/adopt`: the sandbox's endpoints on the target. */
export const adoptReplySchema = z.object({ endpoints: z.record(z.string(), z.string()) });
