/**
 * The image store: resolves an image reference to a manifest digest, fetches and verifies its
 * blobs, and unpacks its layers into a root filesystem directory once per manifest digest.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, mkdir, readFile, readdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join, normalize, posix } from "node:path";
import { pipeline } from "node:stream/promises";
import * as tar from "tar";
import { z } from "zod";
import { logger } from "../../lib/logger";
import type { RegistryAccess } from "../../lib/model";
import { ImageError } from "./errors";
import {
  configSchema,
  descriptorSchema,
  hostArchitecture,
  indexSchema,
  manifestSchema,
  sha256Digest,
  unpackableLayerTypes,
  type Descriptor,
  type ImageManifest,
  type ImageRuntimeConfig,
} from "./oci";
import { parseImageReference, type LayoutReference, type RegistryReference } from "./reference";
import { RegistryClient, type RegistryClientOptions } from "./registry";

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
      parseJson(configBytes, configSchema, `config ${manifest.config.digest}`),
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

/** Where blobs come from: a layout directory or a registry. */
interface BlobSource {
  /** The image manifest the reference names (following indexes to this host's platform). */
  resolve(): Promise<{ manifest: ImageManifest; digest: string }>;
  /** A small verified blob (config). */
  readBlob(descriptor: Descriptor): Promise<Buffer>;
  /** A verified local file holding the layer blob. */
  layerFile(descriptor: Descriptor): Promise<string>;
}

class LayoutSource implements BlobSource {
  readonly #ref: LayoutReference;
  constructor(ref: LayoutReference) {
    this.#ref = ref;
  }

  async resolve(): Promise<{ manifest: ImageManifest; digest: string }> {
    const where = `OCI layout ${this.#ref.path}`;
    const indexBytes = await readFile(join(this.#ref.path, "index.json")).catch(
      (error: NodeJS.ErrnoException) => {
        throw new ImageError(
          "not_found",
          `${where}: cannot read index.json (${error.code ?? error.message}); the path must be an OCI image layout directory`,
          { cause: error },
        );
      },
    );
    const index = parseJson(indexBytes, indexSchema, `${where}/index.json`);
    const tagged = index.manifests.filter(
      (m) => m.annotations?.["org.opencontainers.image.ref.name"] === this.#ref.tag,
    );
    const tags = index.manifests.map(
      (m) => m.annotations?.["org.opencontainers.image.ref.name"] ?? "(untagged)",
    );
    let chosen: Descriptor | undefined;
    if (this.#ref.tag !== undefined) chosen = tagged[0];
    else if (index.manifests.length === 1) chosen = index.manifests[0];
    if (!chosen) {
      const why =
        this.#ref.tag === undefined
          ? "holds several images; name one with a tag"
          : `has no image tagged "${this.#ref.tag}"`;
      throw new ImageError("not_found", `${where} ${why} (tags: ${tags.join(", ") || "none"})`);
    }
    return followToManifest(chosen, (d) => this.readBlob(d), where);
  }

  async readBlob(descriptor: Descriptor): Promise<Buffer> {
    const bytes = await readFile(this.#blobPath(descriptor)).catch(
      (error: NodeJS.ErrnoException) => {
        throw new ImageError(
          "not_found",
          `OCI layout ${this.#ref.path}: blob ${descriptor.digest} missing (${error.code ?? ""}); the layout is incomplete`,
          { cause: error },
        );
      },
    );
    const digest = sha256Digest(bytes);
    if (digest !== descriptor.digest) {
      throw new ImageError(
        "digest_mismatch",
        `OCI layout ${this.#ref.path}: blob ${descriptor.digest} has digest ${digest}; the layout is corrupt`,
      );
    }
    return bytes;
  }

  async layerFile(descriptor: Descriptor): Promise<string> {
    const path = this.#blobPath(descriptor);
    const hash = createHash("sha256");
    await pipeline(createReadStream(path), hash).catch((error: NodeJS.ErrnoException) => {
      throw new ImageError(
        "not_found",
        `OCI layout ${this.#ref.path}: layer ${descriptor.digest} missing (${error.code ?? ""}); the layout is incomplete`,
        { cause: error },
      );
    });
    const digest = `sha256:${hash.digest("hex")}`;
    if (digest !== descriptor.digest) {
      throw new ImageError(
        "digest_mismatch",
        `OCI layout ${this.#ref.path}: layer ${descriptor.digest} has digest ${digest}; the layout is corrupt`,
      );
    }
    return path;
  }

  #blobPath(descriptor: Descriptor): string {
    return join(this.#ref.path, "blobs", "sha256", descriptor.digest.slice("sha256:".length));
  }
}

class RegistrySource implements BlobSource {
  readonly #ref: RegistryReference;
  readonly #client: RegistryClient;
  readonly #blobDir: string;

  constructor(ref: RegistryReference, options: RegistryClientOptions, cacheDir: string) {
    this.#ref = ref;
    this.#client = new RegistryClient(ref, options);
    this.#blobDir = join(cacheDir, "blobs", "sha256");
  }

  async resolve(): Promise<{ manifest: ImageManifest; digest: string }> {
    const where = `${this.#ref.registry}/${this.#ref.repository}`;
    const { bytes, digest, mediaType } = await this.#client.manifest(this.#ref.reference);
    const root = { mediaType, digest, size: bytes.length };
    return followToManifest(
      root,
      async (d) => (d.digest === digest ? bytes : (await this.#client.manifest(d.digest)).bytes),
      where,
    );
  }

  async readBlob(descriptor: Descriptor): Promise<Buffer> {
    return readFile(await this.layerFile(descriptor));
  }

  async layerFile(descriptor: Descriptor): Promise<string> {
    const path = join(this.#blobDir, descriptor.digest.slice("sha256:".length));
    const present = await lstat(path).then(
      (s) => s.size === descriptor.size,
      () => false,
    );
    if (!present) await this.#client.downloadBlob(descriptor, path);
    return path;
  }
}

/** Follows an index (possibly nested) to the manifest for this host's platform. */
async function followToManifest(
  start: Descriptor,
  read: (descriptor: Descriptor) => Promise<Buffer>,
  where: string,
): Promise<{ manifest: ImageManifest; digest: string }> {
  let descriptor = start;
  for (let depth = 0; depth < 4; depth += 1) {
    const bytes = await read(descriptor);
    const what = `${where} ${descriptor.digest}`;
    const probe = parseJson(bytes, z.looseObject({ manifests: z.unknown() }).partial(), what);
    if (probe.manifests === undefined) {
      return { manifest: parseJson(bytes, manifestSchema, what), digest: descriptor.digest };
    }
    const document = parseJson(bytes, indexSchema, what);
    const arch = hostArchitecture();
    const match = document.manifests.find(
      (m) => m.platform?.os === "linux" && m.platform.architecture === arch,
    );
    if (!match) {
      const platforms = document.manifests
        .map((m) => (m.platform ? `${m.platform.os}/${m.platform.architecture}` : "?"))
        .join(", ");
      throw new ImageError(
        "unsupported",
        `${where}: image index has no linux/${arch} image (has: ${platforms})`,
      );
    }
    descriptor = descriptorSchema.parse(match);
  }
  throw new ImageError("unsupported", `${where}: image indexes nested too deep`);
}

function parseJson<T extends z.ZodType>(bytes: Buffer, schema: T, what: string): z.infer<T> {
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

function runtimeConfig(document: z.infer<typeof configSchema>): ImageRuntimeConfig {
  const config = document.config ?? {};
  return {
    env: config.Env ?? [],
    entrypoint: config.Entrypoint ?? [],
    cmd: config.Cmd ?? [],
    workingDir: config.WorkingDir || "/work",
  };
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

/** One symlink entry of a layer, created by us (not node-tar) so its target stays verbatim. */
interface SymlinkEntry {
  readonly index: number;
  readonly path: string;
  readonly target: string;
}

/**
 * Applies one layer: first its whiteouts (which only hide files of lower layers, per the OCI
 * image spec), then its files, then its symlinks.
 *
 * Symlinks are created here rather than by node-tar because node-tar (without `preservePaths`)
 * rewrites absolute targets (`/lib/x86_64-linux-gnu/ld-linux…` → `lib/…`), which breaks every
 * Debian/Ubuntu image; a symlink's target is resolved inside the sandbox's root at run time, so
 * it is safe verbatim. What must never escape is an entry's PATH: entries with `..` or an
 * absolute path are refused, and so is any entry written through a symlink (of this layer: checked
 * here against the listing; of a lower layer: node-tar's own check, made fatal by `strict`).
 * Owners are not applied and setuid/setgid bits are dropped.
 */
/** How many more bytes of files the layers of one image may unpack (counted down). */
interface UnpackBudget {
  readonly max: number;
  left: number;
}

async function unpackLayer(
  file: string,
  rootfs: string,
  digest: string,
  budget: UnpackBudget,
): Promise<void> {
  const whiteouts: string[] = [];
  const symlinks: SymlinkEntry[] = [];
  /** Index of the last entry for each path: a later entry replaces an earlier one. */
  const lastIndex = new Map<string, number>();
  let refusal: string | undefined;
  try {
    let index = 0;
    await tar.t({
      file,
      onReadEntry: (entry) => {
        index += 1;
        if (refusal !== undefined) return;
        // Counted while listing, before anything is written: a bomb never reaches the disk.
        budget.left -= entry.size ?? 0;
        if (budget.left < 0) {
          refusal = `the image's files unpack to more than ${budget.max} bytes; make the image smaller`;
          return;
        }
        const path = entryPath(entry.path);
        if (path === undefined) {
          refusal = `entry ${JSON.stringify(entry.path)} escapes the root filesystem (absolute or ".." path); the layer is malformed or malicious`;
          return;
        }
        const through = symlinks.find((s) => path.startsWith(`${s.path}/`));
        if (through) {
          refusal = `entry ${JSON.stringify(entry.path)} is written through the symlink ${JSON.stringify(through.path)} of the same layer; the layer is malformed or malicious`;
          return;
        }
        if (posix.basename(path).startsWith(".wh.")) whiteouts.push(path);
        else if (entry.type === "SymbolicLink")
          symlinks.push({ index, path, target: entry.linkpath ?? "" });
        lastIndex.set(path, index);
      },
    });
    if (refusal !== undefined) throw new ImageError("unpack", `layer ${digest}: ${refusal}`);
    for (const path of whiteouts) await applyWhiteout(rootfs, path);
    // node-tar (with `unlink`) would silently replace a lower layer's symlink parent with a
    // directory; refuse instead, naming the entry.
    const checked = new Set<string>();
    for (const path of lastIndex.keys()) {
      const through = await symlinkParent(rootfs, path, checked);
      if (through !== undefined) {
        throw new ImageError(
          "unpack",
          `layer ${digest}: entry ${JSON.stringify(path)} is written through the symlink ${JSON.stringify(through)} of a lower layer; the layer is malformed or malicious`,
        );
      }
    }
    await tar.x({
      file,
      cwd: rootfs,
      unlink: true,
      chmod: true,
      // The real umask: node-tar then chmods new directories whose mode it would mask (so /tmp
      // keeps 1777), while files get their exact mode either way.
      processUmask: process.umask(),
      preserveOwner: false,
      // Fatal, not a warning: an entry through a lower layer's symlink must fail the unpack.
      strict: true,
      filter: (path, entry) => {
        if (entryPath(path) === "") return false; // the root directory: the rootfs exists already
        if (posix.basename(path).startsWith(".wh.")) return false;
        if ("type" in entry && entry.type === "SymbolicLink") return false;
        if (typeof entry.mode === "number") entry.mode &= ~0o6000;
        return true;
      },
    });
    for (const link of symlinks) {
      if (lastIndex.get(link.path) !== link.index) continue; // replaced later in the layer
      await createSymlink(rootfs, link);
    }
  } catch (error) {
    if (error instanceof ImageError) throw error;
    throw new ImageError("unpack", `layer ${digest}: cannot unpack (${(error as Error).message})`, {
      cause: error,
    });
  }
}

/** The first parent of `path` that is a symlink in `rootfs`, if any; `checked` caches real dirs. */
async function symlinkParent(
  rootfs: string,
  path: string,
  checked: Set<string>,
): Promise<string | undefined> {
  const parts = path.split("/");
  for (let i = 1; i < parts.length; i += 1) {
    const parent = parts.slice(0, i).join("/");
    if (checked.has(parent)) continue;
    const stats = await lstat(join(rootfs, parent)).catch(() => undefined);
    if (!stats) return undefined; // does not exist yet: nothing below it exists either
    if (stats.isSymbolicLink()) return parent;
    checked.add(parent);
  }
  return undefined;
}

/** The entry's path relative to the root, or undefined if it is absolute or climbs with `..`. */
function entryPath(raw: string): string | undefined {
  // The root directory itself ("/", as umoci writes it; "./" and "." elsewhere) is no escape.
  if (/^\/+$/.test(raw)) return "";
  if (raw.startsWith("/")) return undefined;
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) return undefined;
  return parts.join("/");
}

async function createSymlink(rootfs: string, link: SymlinkEntry): Promise<void> {
  const parent = posix.dirname(link.path);
  const parentDir = await directoryInside(rootfs, parent === "." ? "" : parent, true);
  if (!parentDir) {
    throw new ImageError(
      "unpack",
      `symlink ${JSON.stringify(link.path)}: its directory is itself a symlink or not a directory; the layer is malformed or malicious`,
    );
  }
  const at = join(parentDir, posix.basename(link.path));
  await rm(at, { recursive: true, force: true });
  await symlink(link.target, at);
}
async function applyWhiteout(rootfs: string, path: string): Promise<void> {
  const clean = normalize(`/${path}`).slice(1);
  const parent = posix.dirname(clean);
  const name = posix.basename(clean);
  const parentDir = await directoryInside(rootfs, parent === "." ? "" : parent);
  if (!parentDir) return;
  if (name === ".wh..wh..opq") {
    for (const child of await readdir(parentDir))
      await rm(join(parentDir, child), { recursive: true, force: true });
  } else {
    await rm(join(parentDir, name.slice(".wh.".length)), { recursive: true, force: true });
  }
}

/**
 * `rootfs/relative` if every component is a real directory (never through a symlink); with
 * `create`, missing components are made (as a tar's implied parent directories are).
 */
async function directoryInside(
  rootfs: string,
  relative: string,
  create = false,
): Promise<string | undefined> {
  let current = rootfs;
  for (const part of relative.split("/").filter((p) => p !== "" && p !== ".")) {
    if (part === "..") return undefined;
    current = join(current, part);
    let stats = await lstat(current).catch(() => undefined);
    if (!stats && create) {
      await mkdir(current, { mode: 0o755 });
      stats = await lstat(current);
    }
    if (!stats?.isDirectory()) return undefined;
  }
  return current;
}
