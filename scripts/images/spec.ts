/**
 * The image builder's input: a declarative image spec (layers of files, image config) and a push
 * target, as zod schemas, and the error a bad one throws (naming the field).
 */
import { posix } from "node:path";
import { z } from "zod";

/** A path inside the image: absolute, normalised, no `..`. */
const imagePath = z
  .string()
  .refine((p) => p.startsWith("/") && posix.normalize(p) === p && !p.split("/").includes(".."), {
    error: (issue) =>
      `image paths are absolute and normalised (like /usr/bin/tool), got ${JSON.stringify(issue.input)}`,
  });

/** One thing a layer puts into the image. */
export const entrySchema = z.discriminatedUnion("type", [
  /** A host file, copied (symlinks followed) to `path`. */
  z.object({
    type: z.literal("file"),
    path: imagePath,
    from: z.string().min(1),
    mode: z.number().int().optional(),
  }),
  /** A host directory, copied recursively to `path`, symlinks kept; `exclude` names skipped. */
  z.object({
    type: z.literal("tree"),
    path: imagePath,
    from: z.string().min(1),
    exclude: z.array(z.string()).optional(),
  }),
  /** A file with this content. */
  z.object({
    type: z.literal("content"),
    path: imagePath,
    content: z.union([z.string(), z.instanceof(Buffer)]),
    mode: z.number().int().optional(),
  }),
  z.object({ type: z.literal("symlink"), path: imagePath, target: z.string().min(1) }),
  z.object({ type: z.literal("dir"), path: imagePath, mode: z.number().int().optional() }),
]);
/** One thing a layer puts into the image (a host file or tree, inline content, a link, a dir). */
export type LayerEntry = z.input<typeof entrySchema>;

/** Repository names as the distribution spec allows them (lowercase, `/`-separated parts). */
const repositoryName = z
  .string()
  .regex(
    /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/,
    "must be lowercase letters, digits and . _ - separated parts, joined by / (like shop/frontend)",
  );
const tagName = z
  .string()
  .regex(
    /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/,
    "must be 1-128 letters, digits, _ . - (like 0.1.0)",
  );

/** What to build: a name, layers (bottom first) and the image config. */
export const imageSpecSchema = z.object({
  /** Repository under the registry's prefix, e.g. `pause` or `shop/frontend`. */
  name: repositoryName,
  /** A readable tag pushed beside the digest (default: `in-<first 12 hex of the input hash>`). */
  tag: tagName.optional(),
  layers: z
    .array(z.object({ name: z.string().min(1), entries: z.array(entrySchema) }))
    .min(1, "an image needs at least one layer"),
  config: z
    .object({
      entrypoint: z.array(z.string()).optional(),
      cmd: z.array(z.string()).optional(),
      env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).optional(),
      workdir: imagePath.optional(),
      /** Numeric `uid:gid`, so a pod's `runAsNonRoot` can check it. */
      user: z
        .string()
        .regex(/^\d+(:\d+)?$/, "must be numeric uid[:gid] (like 65532:65532)")
        .optional(),
      exposedPorts: z.array(z.union([z.number().int().min(1).max(65535), z.string()])).optional(),
      labels: z.record(z.string(), z.string()).optional(),
      stopSignal: z.string().optional(),
    })
    .default({}),
});
/** What to build: a name, layers (bottom first) and the image config. */
export type ImageSpec = z.input<typeof imageSpecSchema>;

/**
 * Where to push: `host[:port][/prefix]` and skopeo's destination flags. The default is the
 * testbed registry, `localhost:5055/shardworks`, over plain HTTP.
 */
export const pushTargetSchema = z.object({
  registry: z
    .string()
    .regex(
      /^(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::\d{1,5})?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/,
      "must be host[:port][/prefix] (like registry.example.com/platform or localhost:5055/shardworks), without a scheme",
    ),
  /** skopeo `--dest-creds user:password`. */
  creds: z.string().includes(":", "must be user:password").optional(),
  /** skopeo `--dest-authfile` (a containers-auth.json / Docker config.json). */
  authfile: z.string().optional(),
  /** skopeo `--dest-tls-verify`; default true, except for the testbed registry. */
  tlsVerify: z.boolean().optional(),
  /** skopeo `--dest-cert-dir`. */
  certDir: z.string().optional(),
});
/** Where to push and with which skopeo flags. */
export type PushTarget = z.input<typeof pushTargetSchema>;

/** A built, pushed image. */
export interface BuiltImage {
  /** Pinned reference: `<registry>/<name>@sha256:…`, what pods and stack config use. */
  readonly ref: string;
  /** The manifest digest, `sha256:…`. */
  readonly digest: string;
  /** The readable tag also pushed: `<registry>/<name>:<tag>`. */
  readonly tagged: string;
  /** Sum of the compressed layers and config, in bytes (what a pull transfers). */
  readonly size: number;
  /** Whether the cache answered (nothing was built or pushed). */
  readonly cached: boolean;
  /** The local OCI layout (`oci:<layout>:<tag>` for umoci/skopeo). */
  readonly layout: string;
  readonly layoutTag: string;
}

/** Options of one build. */
export interface BuildOptions {
  /** Push here instead of the testbed registry. */
  readonly target?: PushTarget;
  /** Progress lines (default: stderr, prefixed `images:`). */
  readonly progress?: (line: string) => void;
  /** Rebuild and push even when the cache matches. */
  readonly force?: boolean;
}

/** Turns a zod error into one line per issue, naming the field. */
export function describeZodError(error: z.ZodError, what: string): string {
  return error.issues
    .map((i) => `${what}${i.path.length > 0 ? `.${i.path.join(".")}` : ""}: ${i.message}`)
    .join("\n");
}

/** An input problem: its message names the field and the fix (the CLI prints only the message). */
export class ImageInputError extends Error {}

/** Parses `spec`, throwing an {@link ImageInputError} naming each bad field. */
export function parseImageSpec(spec: ImageSpec): z.output<typeof imageSpecSchema> {
  const parsed = imageSpecSchema.safeParse(spec);
  if (!parsed.success) throw new ImageInputError(describeZodError(parsed.error, "image"));
  return parsed.data;
}

/** Parses a push target (e.g. from `--registry`), throwing an {@link ImageInputError}. */
export function parsePushTarget(target: PushTarget): z.output<typeof pushTargetSchema> {
  const parsed = pushTargetSchema.safeParse(target);
  if (!parsed.success) throw new ImageInputError(describeZodError(parsed.error, "target"));
  return parsed.data;
}
