/**
 * The image store: resolves an image reference to a manifest digest, fetches and verifies its
 * blobs (`sources.ts`), and unpacks its layers (`unpack.ts`) into a root filesystem directory
 * once per manifest digest, laid out in its cache as `[public/]rootfs/<digest>/{rootfs,image.json}`.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { logger } from "../../lib/logger";
import type { RegistryAccess } from "../../../contract/model";
import { ImageError } from "./errors";
import {
  configSchema,
  parseOciDocument,
  runtimeConfig,
  unpackableLayerTypes,
  type ImageManifest,
  type ImageRuntimeConfig,
} from "./oci";
import { parseImageReference } from "./reference";
import type { RegistryClientOptions } from "./registry";
import { LayoutSource, RegistrySource, type BlobSource } from "./sources";
import { unpackLayer, type UnpackBudget } from "./unpack";

/** An image unpacked on this host. */
export interface PreparedImage {
  /** The reference as given. */
  readonly image: string;
  /** `sha256:…` of the image manifest: the cache key. */
  readonly manifestDigest: string;
  /** Directory holding the unpacked root filesystem (treat it as read-only: it is shared). */
  readonly rootfs: string;
  readonly config: ImageRuntimeConfig;
}

export interface ImageStoreOptions extends RegistryClientOptions {
  /** Cache directory. Default: `$XDG_CACHE_HOME/shardworks/images` or `~/.cache/shardworks/images`. */
  readonly cacheDir?: string;
  /** Most layers an image may have; default {@link IMAGE_LIMITS}.maxLayers. */
  readonly maxLayers?: number;
  /** Most bytes an image's layers may declare in total; default {@link IMAGE_LIMITS}.maxBytes. */
  readonly maxImageBytes?: number;
  /** Most bytes an image's config may declare; default {@link IMAGE_LIMITS}.maxConfigBytes. */
  readonly maxConfigBytes?: number;
  /** Most bytes its layers' files may hold unpacked; default {@link IMAGE_LIMITS}.maxUnpackedBytes. */
  readonly maxUnpackedBytes?: number;
}

/**
 * Most layers an image may have, most bytes its layers may declare, and most bytes its config may
 * declare (defaults). The config is read into the node agent's memory: real ones are kilobytes.
 */
export const IMAGE_LIMITS = {
  maxLayers: 128,
  maxBytes: 8 * 1024 ** 3,
  maxConfigBytes: 16 * 1024 ** 2,
  /**
   * What the files of all its layers may hold once unpacked: compression makes the declared
   * sizes no bound (a gzip of zeros unpacks a thousand times larger).
   */
  maxUnpackedBytes: 32 * 1024 ** 3,
} as const;

/**
 * Refuses an image with more layers, larger declared layers in total, or a larger declared
 * config than the node takes: before any blob is fetched, so a hostile manifest can neither fill
 * the node's disk nor the node agent's memory (the config is downloaded, then read whole).
 */
function checkImageSize(manifest: ImageManifest, image: string, options: ImageStoreOptions): void {
  const maxLayers = options.maxLayers ?? IMAGE_LIMITS.maxLayers;
  const maxBytes = options.maxImageBytes ?? IMAGE_LIMITS.maxBytes;
  const maxConfigBytes = options.maxConfigBytes ?? IMAGE_LIMITS.maxConfigBytes;
  if (manifest.config.size > maxConfigBytes) {
    throw new ImageError(
      "unsupported",
      `image "${image}" declares a config of ${manifest.config.size} bytes; at most ${maxConfigBytes} are taken`,
    );
  }
  if (manifest.layers.length > maxLayers) {
    throw new ImageError(
      "unsupported",
      `image "${image}" has ${manifest.layers.length} layers; at most ${maxLayers} are taken (squash the image)`,
    );
  }
  const bytes = manifest.layers.reduce((n, layer) => n + layer.size, 0);
  if (bytes > maxBytes) {
    throw new ImageError(
      "unsupported",
      `image "${image}" declares ${bytes} bytes of layers; at most ${maxBytes} are taken (make the image smaller)`,
    );
  }
}

/** Directories every driver mounts over; created empty in each rootfs so a read-only root works. */
const mountPoints = ["proc", "dev", "sys", "tmp", "work", ".shardworks"];

const log = logger.child({ component: "image-store" });

/** The default cache directory. */
export function defaultImageCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache");
  return join(base, "shardworks", "images");
}

/**
 * The key a driver caches a prepared image under: an image fetched for the platform (`any`) is
 * not handed to a shard's sandbox (`public`) without resolving it again under the shard's rules.
 */
export function preparedImageKey(image: string, access: RegistryAccess = "any"): string {
  return access === "any" ? image : `${access}:${image}`;
}

/** Resolves, verifies and unpacks OCI images; safe to call concurrently for the same image. */
export class ImageStore {
  readonly cacheDir: string;
  readonly #options: ImageStoreOptions;
  /** Unpacks in flight, by target directory: concurrent prepares of one image unpack it once. */
  readonly #unpacking = new Map<string, Promise<PreparedImage>>();

  constructor(options: ImageStoreOptions = {}) {
    this.#options = options;
    this.cacheDir = options.cacheDir ?? defaultImageCacheDir();
  }

  /**
   * Resolves `image` and returns its unpacked root filesystem, unpacking it on first use. With
   * `access: "public"` (a shard's image) the registry is reached only on public addresses (see
   * `RegistryClientOptions.publicOnly`), without the platform's credentials, a layout path is
   * refused, and blobs and root filesystems are cached apart (`<cacheDir>/public`): a shard naming
   * the digest of a layer the platform fetched privately does not get it from the cache.
   */
  async prepare(image: string, access: RegistryAccess = "any"): Promise<PreparedImage> {
    const ref = parseImageReference(image);
    if (ref.kind === "layout" && access === "public") {
      throw new ImageError(
        "unsupported",
        `image "${image}": a layout path on the node is for the platform's sandboxes only; a shard's image must come from a registry`,
      );
    }
    const root = access === "public" ? join(this.cacheDir, "public") : this.cacheDir;
    const source =
      ref.kind === "layout"
        ? new LayoutSource(ref)
        : new RegistrySource(
            ref,
            access === "public"
              ? { ...this.#options, publicOnly: true, credentials: {} }
              : this.#options,
            root,
          );
    const { manifest, digest } = await source.resolve();
    checkImageSize(manifest, image, this.#options);
    const key = digest.slice("sha256:".length);
    const finalDir = join(root, "rootfs", key);
    const cached = await readPrepared(finalDir);
    if (cached) return { ...cached, image };
    let pending = this.#unpacking.get(finalDir);
    if (!pending) {
      pending = this.#unpack(source, manifest, digest, finalDir).finally(() =>
        this.#unpacking.delete(finalDir),
      );
      this.#unpacking.set(finalDir, pending);
    }
    return { ...(await pending), image };
  }

  async #unpack(
    source: BlobSource,
    manifest: ImageManifest,
    digest: string,
    finalDir: string,
  ): Promise<PreparedImage> {
    const started = Date.now();
    const configBytes = await source.readBlob(manifest.config);
    const config = runtimeConfig(
      parseOciDocument(configBytes, configSchema, `config ${manifest.config.digest}`),
    );
    const temporary = `${finalDir}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
    const rootfs = join(temporary, "rootfs");
    try {
      await mkdir(rootfs, { recursive: true, mode: 0o755 });
      const max = this.#options.maxUnpackedBytes ?? IMAGE_LIMITS.maxUnpackedBytes;
      const unpacked: UnpackBudget = { max, left: max };
      for (const layer of manifest.layers) {
        if (!unpackableLayerTypes.has(layer.mediaType)) {
          throw new ImageError(
            "unsupported",
            `layer ${layer.digest} has media type ${layer.mediaType}; only tar and tar+gzip layers are supported`,
          );
        }
        const file = await source.layerFile(layer);
        await unpackLayer(file, rootfs, layer.digest, unpacked);
      }
      for (const dir of mountPoints)
        await mkdir(join(rootfs, dir), { mode: 0o755 }).catch(ignoreExists);
      const prepared: Omit<PreparedImage, "image"> = {
        manifestDigest: digest,
        rootfs: join(finalDir, "rootfs"),
        config,
      };
      // Written last: a cache directory with image.json is complete.
      await writeFile(join(temporary, "image.json"), JSON.stringify(prepared));
      try {
        await rename(temporary, finalDir);
      } catch (error) {
        // Another process unpacked the same digest first; its copy is as good as ours.
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== "ENOTEMPTY" && code !== "EEXIST") throw error;
      }
      log.info(
        { digest, layers: manifest.layers.length, millis: Date.now() - started },
        "image unpacked",
      );
    } finally {
      await rm(temporary, { recursive: true, force: true });
    }
    const result = await readPrepared(finalDir);
    if (!result)
      throw new ImageError("unpack", `image ${digest}: unpacked but ${finalDir} is incomplete`);
    return { ...result, image: "" };
  }
}

async function readPrepared(dir: string): Promise<Omit<PreparedImage, "image"> | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, "image.json"), "utf8")) as Omit<
      PreparedImage,
      "image"
    >;
  } catch {
    return undefined;
  }
}

function ignoreExists(error: NodeJS.ErrnoException): void {
  if (error.code !== "EEXIST") throw error;
}
