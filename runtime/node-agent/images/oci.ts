/**
 * The OCI image documents the store reads (index, manifest, config), as zod schemas. They are
 * loose objects: images carry many fields we do not need, and must still parse.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { ImageError } from "./errors";

export const MediaType = {
  OciIndex: "application/vnd.oci.image.index.v1+json",
  OciManifest: "application/vnd.oci.image.manifest.v1+json",
  OciConfig: "application/vnd.oci.image.config.v1+json",
  OciLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  OciLayerTar: "application/vnd.oci.image.layer.v1.tar",
  DockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  DockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  DockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
} as const;

/** Layer media types we can unpack (node-tar detects gzip itself). */
export const unpackableLayerTypes: ReadonlySet<string> = new Set([
  MediaType.OciLayerGzip,
  MediaType.OciLayerTar,
  MediaType.DockerLayerGzip,
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
]);

export const digestSchema = z.string().regex(/^sha256:[a-f0-9]{64}$/, {
  message: "must be sha256:<64 lowercase hex> (the only digest algorithm supported)",
});

export const descriptorSchema = z.looseObject({
  mediaType: z.string(),
  digest: digestSchema,
  size: z.number().int().nonnegative(),
  annotations: z.record(z.string(), z.string()).optional(),
  platform: z.looseObject({ architecture: z.string(), os: z.string() }).optional(),
});
export type Descriptor = z.infer<typeof descriptorSchema>;

export const indexSchema = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  manifests: z.array(descriptorSchema),
});
export type ImageIndex = z.infer<typeof indexSchema>;

export const manifestSchema = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  config: descriptorSchema,
  layers: z.array(descriptorSchema),
});
export type ImageManifest = z.infer<typeof manifestSchema>;

export const configSchema = z.looseObject({
  architecture: z.string().optional(),
  os: z.string().optional(),
  config: z
    .looseObject({
      Env: z.array(z.string()).nullish(),
      Entrypoint: z.array(z.string()).nullish(),
      Cmd: z.array(z.string()).nullish(),
      WorkingDir: z.string().nullish(),
      User: z.string().nullish(),
    })
    .nullish(),
});

/** What a driver needs from the image config to run a command in it. */
export interface ImageRuntimeConfig {
  readonly env: readonly string[];
  readonly entrypoint: readonly string[];
  readonly cmd: readonly string[];
  readonly workingDir: string;
}

/** `sha256:<hex>` of a buffer. */
export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** The OCI architecture name of this host. */
export function hostArchitecture(): string {
  const names: Record<string, string> = {
    x64: "amd64",
    arm64: "arm64",
    arm: "arm",
    s390x: "s390x",
    ppc64: "ppc64le",
  };
  return names[process.arch] ?? process.arch;
}

/** Parses an OCI document (`what` names it in errors) with `schema`; an {@link ImageError} if it is not one. */
export function parseOciDocument<T extends z.ZodType>(
  bytes: Buffer,
  schema: T,
  what: string,
): z.infer<T> {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch (error) {
    throw new ImageError("unsupported", `${what} is not JSON`, { cause: error });
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .map((i) => `${i.path.join(".") || "(document)"}: ${i.message}`)
      .join("; ");
    throw new ImageError("unsupported", `${what} is not a valid OCI document: ${issues}`);
  }
  return parsed.data;
}

/** What a sandbox takes from an image config (defaults filled in). */
export function runtimeConfig(document: z.infer<typeof configSchema>): ImageRuntimeConfig {
  const config = document.config ?? {};
  return {
    env: config.Env ?? [],
    entrypoint: config.Entrypoint ?? [],
    cmd: config.Cmd ?? [],
    workingDir: config.WorkingDir || "/work",
  };
}
