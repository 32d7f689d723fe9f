/**
 * Edge validation of the scheduler API: its request bodies and query strings, as zod schemas
 * (the readers that apply them are the edge kit's, `lib/http`).
 */
import { z } from "zod";
import {
  dnsLabel,
  hasControlCharacter,
  nodeName,
  sandboxPhaseSchema,
  sandboxSpecSchema,
} from "../../contract/model";
import { parseImageReference } from "../node-agent/images/reference";

/**
 * An image reference: `oci:/abs/layout-dir[:tag]` or `host[:port]/repo[:tag|@sha256:…]`, checked
 * with the image store's own parser so the API refuses exactly what a node could not resolve.
 */
export const imageReferenceSchema = z
  .string()
  .min(1)
  .max(512)
  .superRefine((image, ctx) => {
    if (hasControlCharacter(image)) {
      ctx.addIssue({
        code: "custom",
        message:
          "must not contain control characters (NUL, CR, LF, …): no image reference or layout path has them",
      });
      return;
    }
    try {
      parseImageReference(image);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message });
    }
  });

/** Most bytes of command line + environment a sandbox may ask for (well under Linux's ARG_MAX). */
export const maxCommandLineBytes = 128 * 1024;

const noNul = (what: string) =>
  z.string().refine((value) => !value.includes("\0"), {
    message: `${what} must not contain NUL bytes (a command line cannot carry them); remove them`,
  });

/** Body of `POST /v1/sandboxes`: a sandbox spec, optionally with the id to use. */
export const createSandboxBodySchema = sandboxSpecSchema
  .extend({
    image: imageReferenceSchema,
    command: z.array(noNul("a command argument")).min(1).max(256),
    env: z
      .record(z.string(), noNul("an environment value"))
      .superRefine((env, ctx) => {
        for (const name of Object.keys(env)) {
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
            ctx.addIssue({
              code: "custom",
              path: [name],
              message:
                "an environment variable name is letters, digits and '_', not starting with a digit (e.g. LOG_LEVEL)",
            });
          }
        }
      })
      .default({}),
    ports: z
      .array(z.number().int().min(1).max(65535))
      .max(32, { message: "at most 32 ports per sandbox" })
      .default([])
      .refine((ports) => new Set(ports).size === ports.length, {
        message: "each port at most once",
      }),
    /** Default: `sb-<random>`. A shard token's id is scoped to its shard (see `sandboxId`). */
    id: dnsLabel.optional(),
  })
  // Set by the API from the caller's token, never by the caller.
  .omit({ shardUid: true, registryAccess: true })
  .superRefine((spec, ctx) => {
    const bytes =
      spec.command.reduce((n, arg) => n + Buffer.byteLength(arg) + 1, 0) +
      Object.entries(spec.env).reduce(
        (n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v) + 2,
        0,
      );
    if (bytes > maxCommandLineBytes) {
      ctx.addIssue({
        code: "custom",
        path: ["command"],
        message: `command and env together are ${bytes} bytes; at most ${maxCommandLineBytes} bytes are allowed — pass large data as a file in the image instead`,
      });
    }
  });
export type CreateSandboxBody = z.infer<typeof createSandboxBodySchema>;

/** Query of `POST /v1/sandboxes`. */
export const createSandboxQuerySchema = z.strictObject({
  wait: z.enum(["running", "exited"]).optional(),
  /** Seconds to wait; default 60, at most 600. */
  timeout: z.coerce.number().positive().max(600).default(60),
});

/** Body of `POST /v1/sandboxes/:id/migrate`. */
export const migrateBodySchema = z.strictObject({ node: nodeName });

/** Query of `GET /v1/sandboxes/:id/logs`. */
export const logsQuerySchema = z.strictObject({
  follow: z
    .enum(["true", "false", "1", "0"])
    .default("false")
    .transform((v) => v === "true" || v === "1"),
});

/** Query of `GET /v1/nodes`: none (unknown parameters are refused, not ignored). */
export const nodesQuerySchema = z.strictObject({});

/** Query of `GET /v1/sandboxes`. */
export const listQuerySchema = z.strictObject({
  shard: dnsLabel.optional(),
  node: nodeName.optional(),
  phase: sandboxPhaseSchema.optional(),
});
