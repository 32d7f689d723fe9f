/**
 * Unpacking one layer into a root filesystem, safely: whiteouts, then files (node-tar), then
 * symlinks (verbatim), never writing through a symlink or outside the root.
 */
import { createReadStream } from "node:fs";
import { lstat, mkdir, open, readdir, rm, symlink } from "node:fs/promises";
import { join, normalize, posix } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import * as tar from "tar";
import { ImageError } from "./errors";

/** One symlink entry of a layer, created by us (not node-tar) so its target stays verbatim. */
interface SymlinkEntry {
  readonly index: number;
  readonly path: string;
  readonly target: string;
}

/** How many more bytes of files the layers of one image may unpack (counted down). */
export interface UnpackBudget {
  readonly max: number;
  left: number;
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
export async function unpackLayer(
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
    // Whether the layer is gzip, read once for both passes.
    const gzip = await isGzip(file);
    let index = 0;
    const list = tar.t({
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
    await pipeLayer(file, gzip, list);
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
    const extract = tar.x({
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
    await pipeLayer(file, gzip, extract);
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

/** gzip's magic bytes. */
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const BLOCK = 512;

/**
 * Streams a layer file into `sink` as the tar it holds: gunzipped when it is gzip (other
 * compressions are left to node-tar), and given the end it may lack. umoci 0.4.7 (Debian's, which
 * builds our images) ends a layer right after the last file's data, without padding it to a
 * 512-byte block and without the two zero blocks; containerd's and Docker's readers accept that,
 * node-tar (strict) calls it truncated. Only that end is completed: a layer cut inside an entry's
 * data or header is passed on as it is, and node-tar refuses it; one that stops between entries
 * unpacks what it holds, as containerd's would (the blob's digest was checked before).
 * Uncompressed and other layers go to node-tar as they are.
 */
async function pipeLayer(file: string, gzip: boolean, sink: NodeJS.WritableStream): Promise<void> {
  if (!gzip) return pipeline(createReadStream(file), sink);
  return pipeline(createReadStream(file), createGunzip(), new TarEnd(), sink);
}

/** Whether a layer file starts with gzip's magic bytes. */
async function isGzip(file: string): Promise<boolean> {
  const handle = await open(file, "r");
  const magic = Buffer.alloc(2);
  try {
    await handle.read(magic, 0, 2, 0);
  } finally {
    await handle.close();
  }
  return magic.equals(GZIP_MAGIC);
}

/**
 * Passes a tar stream through, following its headers (only their size fields), and at the end
 * adds the padding and end blocks when the stream stopped exactly where an entry's data ends.
 * Hand-written: tar libraries parse entries, none says where a stream stopped relative to one.
 */
class TarEnd extends Transform {
  /** Bytes seen. */
  #at = 0;
  /** Where the next header starts. */
  #next = 0;
  /** Where the last entry's data ends (before its padding). */
  #dataEnd = 0;
  /** A header read in part. */
  #header: Buffer[] = [];
  #headerBytes = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    let i = 0;
    while (i < chunk.length) {
      const pos = this.#at + i;
      if (pos < this.#next) {
        i += Math.min(chunk.length - i, this.#next - pos);
        continue;
      }
      const part = chunk.subarray(i, i + BLOCK - this.#headerBytes);
      this.#header.push(part);
      this.#headerBytes += part.length;
      i += part.length;
      if (this.#headerBytes === BLOCK) {
        const size = entrySize(Buffer.concat(this.#header));
        const start = this.#at + i;
        this.#dataEnd = start + size;
        this.#next = start + Math.ceil(size / BLOCK) * BLOCK;
        this.#header = [];
        this.#headerBytes = 0;
      }
    }
    this.#at += chunk.length;
    this.push(chunk);
    done();
  }

  override _flush(done: () => void): void {
    if (this.#headerBytes === 0 && this.#at >= this.#dataEnd && this.#at <= this.#next) {
      this.push(Buffer.alloc(this.#next - this.#at + 2 * BLOCK));
    }
    done();
  }
}

/** The size field of a tar header: octal digits, or base-256 when its first byte has 0x80. */
function entrySize(header: Buffer): number {
  const field = header.subarray(124, 136);
  if ((field[0]! & 0x80) !== 0) {
    let size = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) size = size * 256 + field[i]!;
    return size;
  }
  const digits = field
    .toString("latin1")
    .replace(/[\0 ]+$/, "")
    .trim();
  return digits === "" ? 0 : parseInt(digits, 8);
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
