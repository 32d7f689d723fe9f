/**
 * Builds small OCI image layouts for tests from the host's static busybox (Debian
 * `busybox-static`): nothing is downloaded. Digests are computed here, as a registry would.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import * as tar from "tar";

/** The static busybox the test images are made of. */
export const hostBusybox = "/bin/busybox";

/** One extra layer: files to add (path → content) and paths to white out (delete from lower layers). */
export interface TestLayer {
  readonly files?: Readonly<Record<string, string>>;
  readonly whiteouts?: readonly string[];
  /** Directories whose lower-layer contents this layer hides (opaque whiteout). */
  readonly opaque?: readonly string[];
}

export interface TestImageOptions {
  readonly tag?: string;
  readonly env?: readonly string[];
  readonly layers?: readonly TestLayer[];
  /** Hand-built uncompressed tar layers (see `rawTar`) applied after `layers`. */
  readonly rawLayers?: readonly Buffer[];
}

/** One hand-written tar entry, for layers a directory cannot express (`..`, setuid, order). */
export interface RawTarEntry {
  readonly path: string;
  readonly type?: "File" | "Directory" | "SymbolicLink" | "Link";
  readonly mode?: number;
  readonly linkpath?: string;
  /** Text, or bytes (a compiled test program). */
  readonly content?: string | Buffer;
}

/** Encodes entries, in order and verbatim, as a tar stream (node-tar's header encoder). */
export function rawTar(entries: readonly RawTarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const type = entry.type ?? "File";
    const data =
      typeof entry.content === "string" || entry.content === undefined
        ? Buffer.from(entry.content ?? "")
        : entry.content;
    const header = new tar.Header({
      path: entry.path,
      type,
      mode: entry.mode ?? (type === "Directory" ? 0o755 : 0o644),
      size: type === "File" ? data.length : 0,
      linkpath: entry.linkpath ?? "",
      mtime: new Date(0),
      // Not the test runner's uid: unpacking must not apply the layer's owners.
      uid: 4321,
      gid: 4321,
    });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    blocks.push(block);
    if (type === "File" && data.length > 0) {
      blocks.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

interface Blob {
  readonly digest: string;
  readonly size: number;
}

function sha256(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

function writeBlob(layout: string, data: Buffer): Blob {
  const digest = sha256(data);
  const path = join(layout, "blobs", "sha256", digest.slice(7));
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
  return { digest, size: data.length };
}

function tarGzip(dir: string): Buffer {
  // tar's sync mode writes to a file; read it back so the digest is of exactly those bytes.
  const file = `${dir}.tar.gz`;
  tar.c({ gzip: true, cwd: dir, file, sync: true, portable: true, mtime: new Date(0) }, ["."]);
  const data = readFileSync(file);
  rmSync(file);
  return data;
}

function busyboxLayerDir(root: string): void {
  mkdirSync(join(root, "bin"), { recursive: true });
  copyFileSync(hostBusybox, join(root, "bin", "busybox"));
  const applets = execFileSync(hostBusybox, ["--list"], { encoding: "utf8" })
    .split("\n")
    .filter(Boolean);
  for (const applet of applets)
    if (applet !== "busybox") symlinkSync("busybox", join(root, "bin", applet));
  for (const dir of ["etc", "tmp", "root", "home"]) mkdirSync(join(root, dir), { recursive: true });
  writeFileSync(join(root, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n");
  writeFileSync(join(root, "etc", "image-marker"), "busybox test image\n");
}

function extraLayerDir(root: string, layer: TestLayer): void {
  mkdirSync(root, { recursive: true });
  for (const [path, content] of Object.entries(layer.files ?? {})) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  for (const path of layer.whiteouts ?? []) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(dirname(join(root, path)), `.wh.${path.split("/").pop() ?? ""}`), "");
  }
  for (const dir of layer.opaque ?? []) {
    mkdirSync(join(root, dir), { recursive: true });
    writeFileSync(join(root, dir, ".wh..wh..opq"), "");
  }
}

/**
 * Writes an OCI image layout at `layout` holding a busybox image (plus any extra layers) and
 * returns its reference, `oci:<layout>:<tag>`.
 */
export function buildBusyboxImage(layout: string, options: TestImageOptions = {}): string {
  const tag = options.tag ?? "latest";
  const staging = mkdtempSync(join(tmpdir(), "sw-image-build-"));
  try {
    const layerDirs: string[] = [];
    const base = join(staging, "layer0");
    busyboxLayerDir(base);
    layerDirs.push(base);
    (options.layers ?? []).forEach((layer, i) => {
      const dir = join(staging, `layer${i + 1}`);
      extraLayerDir(dir, layer);
      layerDirs.push(dir);
    });
    mkdirSync(layout, { recursive: true });
    const layers = layerDirs.map((dir) => {
      const gz = tarGzip(dir);
      return { blob: writeBlob(layout, gz), diffId: sha256(gunzipSync(gz)) };
    });
    for (const raw of options.rawLayers ?? []) {
      const gz = gzipSync(raw);
      layers.push({ blob: writeBlob(layout, gz), diffId: sha256(raw) });
    }
    const config = {
      architecture: "amd64",
      os: "linux",
      config: { Env: options.env ?? ["PATH=/bin"], Cmd: ["sh"] },
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    };
    const configBlob = writeBlob(layout, Buffer.from(JSON.stringify(config)));
    const manifest = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...configBlob },
      layers: layers.map((l) => ({
        mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
        ...l.blob,
      })),
    };
    const manifestBlob = writeBlob(layout, Buffer.from(JSON.stringify(manifest)));
    writeFileSync(join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    const indexPath = join(layout, "index.json");
    let index: { schemaVersion: number; manifests: unknown[] } = {
      schemaVersion: 2,
      manifests: [],
    };
    try {
      index = JSON.parse(readFileSync(indexPath, "utf8")) as typeof index;
    } catch {
      // a new layout
    }
    index.manifests.push({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      ...manifestBlob,
      annotations: { "org.opencontainers.image.ref.name": tag },
    });
    writeFileSync(indexPath, JSON.stringify(index));
    return `oci:${layout}:${tag}`;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}
