/**
 * Edge validators for what is not a body: path parameters and query strings, parsed with zod
 * schemas into `invalid_request` errors that name the field (bodies: `json-body.ts`).
 */
import type { Context } from "hono";
import type { z } from "zod";
import { badRequest } from "../errors";

/** Parse one path parameter (`field` names it in the error). */
export function parseParam<S extends z.ZodType>(
  value: string | undefined,
  schema: S,
  field: string,
): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw badRequest(parsed.error, field);
  return parsed.data;
}

/** Parse the query string with a schema (a strict schema refuses unknown parameters). */
export function parseQuery<S extends z.ZodType>(c: Context, schema: S): z.infer<S> {
  const parsed = schema.safeParse(c.req.query());
  if (!parsed.success) throw badRequest(parsed.error, "query");
  return parsed.data;
}
