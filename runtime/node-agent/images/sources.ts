/**
 * Where an image's blobs come from: an OCI layout directory on the node, or a registry (blobs
 * downloaded into the store's cache). Both resolve a reference to its manifest (following indexes
 * to this host's platform) and hand out verified blobs.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, readFile } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { z } from "zod";
import { ImageError } from "./errors";
import {
  descriptorSchema,
  hostArchitecture,
  indexSchema,
  manifestSchema,
  parseOciDocument,
  sha256Digest,
  type Descriptor,
  type ImageManifest,
} from "./oci";
import type { LayoutReference, RegistryReference } from "./reference";
import { RegistryClient, type RegistryClientOptions } from "./registry";

/** Where blobs come from: a layout directory or a registry. */
export interface BlobSource {
  /** The image manifest the reference names (following indexes to this host's platform). */
  resolve(): Promise<{ manifest: ImageManifest; digest: string }>;
  /** A small verified blob (config). */
  readBlob(descriptor: Descriptor): Promise<Buffer>;
  /** A verified local file holding the layer blob. */
  layerFile(descriptor: Descriptor): Promise<string>;
}

/** Blobs of an OCI layout directory, verified as they are read. */
export class LayoutSource implements BlobSource {
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
    const index = parseOciDocument(indexBytes, indexSchema, `${where}/index.json`);
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

/** Blobs of a registry, downloaded (verified) into `<cacheDir>/blobs/sha256` once. */
export class RegistrySource implements BlobSource {
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
    const probe = parseOciDocument(
      bytes,
      z.looseObject({ manifests: z.unknown() }).partial(),
      what,
    );
    if (probe.manifests === undefined) {
      return { manifest: parseOciDocument(bytes, manifestSchema, what), digest: descriptor.digest };
    }
    const document = parseOciDocument(bytes, indexSchema, what);
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
