/**
 * Unpacking one layer into a root filesystem, safely: whiteouts, then files (node-tar), then
 * symlinks (verbatim), never writing through a symlink or outside the root.
 */
import { lstat, mkdir, readdir, rm, symlink } from "node:fs/promises";
import { join, normalize, posix } from "node:path";
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
