/**
 * Edge validation of the scheduler API: request bodies and query strings, as zod schemas, plus
 * the JSON body reader that turns malformed JSON and wrong content types into clear 4xx errors.
 */
import type { Context } from "hono";
import { z } from "zod";
import { HttpError, badRequest } from "../lib/errors";
import { dnsLabel, sandboxSpecSchema } from "../lib/model";

// The Docker/OCI reference grammar (distribution/reference), written out because no maintained
// npm package exports it as a validator; only its shape is checked here, the driver resolves it.
const component = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
const domain =
  "(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?";
const tag = "[\\w][\\w.-]{0,127}";
const digest = "sha256:[a-f0-9]{64}";
const registryReference = new RegExp(
  `^(?:${domain}/)?${component}(?:/${component})*(?::${tag})?(?:@${digest})?$`,
);
const layoutReference = new RegExp(`^oci:/[^\\s:@]+(?::${tag}|@${digest})?$`);

/** An image reference: `oci:/abs/layout-dir[:tag|@sha256:…]` or a registry `host/repo[:tag][@sha256:…]`. */
export const imageReferenceSchema = z
  .string()
  .min(1)
  .max(512)
  .refine((s) => layoutReference.test(s) || registryReference.test(s), {
    message:
      'is not an image reference: use "oci:/absolute/layout/dir[:tag]" for an OCI layout directory or "registry.example:5000/repo:tag" (or "@sha256:<64 hex>") for a registry',
  });

/** Body of `POST /v1/sandboxes`: a sandbox spec, optionally with the id to use. */
export const createSandboxBodySchema = sandboxSpecSchema.extend({
  image: imageReferenceSchema,
  /** Default: `sb-<random>`. */
  id: dnsLabel.optional(),
});
export type CreateSandboxBody = z.infer<typeof createSandboxBodySchema>;

/** Query of `POST /v1/sandboxes`. */
export const createSandboxQuerySchema = z.strictObject({
  wait: z.enum(["running", "exited"]).optional(),
  /** Seconds to wait; default 60, at most 600. */
  timeout: z.coerce.number().positive().max(600).default(60),
});

/** Body of `POST /v1/sandboxes/:id/migrate`. */
export const migrateBodySchema = z.strictObject({ node: dnsLabel });

/** Query of `GET /v1/sandboxes/:id/logs`. */
export const logsQuerySchema = z.strictObject({
  follow: z
    .enum(["true", "false", "1", "0"])
    .default("false")
    .transform((v) => v === "true" || v === "1"),
});

/** Query of `GET /v1/sandboxes`. */
export const listQuerySchema = z.strictObject({
  shard: dnsLabel.optional(),
  node: dnsLabel.optional(),
  phase: z.string().optional(),
});

/** Parse a path parameter that must be a sandbox id / node name. */
export function parseName(value: string, field: string): string {
  const parsed = dnsLabel.safeParse(value);
  if (!parsed.success) throw badRequest(parsed.error, field);
  return parsed.data;
}

/** Parse the query string with a schema (unknown parameters are rejected). */
export function parseQuery<S extends z.ZodType>(c: Context, schema: S): z.infer<S> {
  const parsed = schema.safeParse(c.req.query());
  if (!parsed.success) throw badRequest(parsed.error, "query");
  return parsed.data;
}

/** Read a JSON body and parse it with a schema: 415, 400 malformed_json or 400 naming the fields. */
export async function parseJsonBody<S extends z.ZodType>(
  c: Context,
  schema: S,
): Promise<z.infer<S>> {
  const type = c.req.header("content-type");
  if (type !== undefined && !/^application\/json\b/i.test(type)) {
    throw new HttpError(
      415,
      "unsupported_media_type",
      `send JSON with "content-type: application/json" (got "${type}")`,
    );
  }
  const text = await c.req.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new HttpError(
      400,
      "malformed_json",
      `the request body is not valid JSON: ${(error as Error).message}`,
    );
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw badRequest(parsed.error);
  return parsed.data;
}
