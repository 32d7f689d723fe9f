/** The one error body of every Shardworks HTTP API. */
import { z } from "zod";

/** `{ error: { code, message, details? } }`: `code` is for programs, `message` names the fix. */
export const apiErrorBodySchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});
export type ApiErrorBody = z.infer<typeof apiErrorBodySchema>;
