/**
 * Staging a layer: its entries copied into a fresh directory, then every mtime set to the epoch,
 * owners 0:0 and modes normalised, so the same inputs give the same layer.
 */
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { chmod, lchown, lutimes } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { z } from "zod";
import { ImageInputError, type entrySchema } from "./spec";

/** Copies a host directory into `dest`, keeping symlinks, skipping names in `exclude`. */
function copyTree(from: string, dest: string, exclude: ReadonlySet<string>): void {
  mkdirSync(dest, { recursive: true });
  for (const name of readdirSync(from).sort()) {
    if (exclude.has(name)) continue;
    const source = join(from, name);
    const target = join(dest, name);
    const stat = lstatSync(source);
    if (stat.isSymbolicLink()) symlinkSync(readlinkSync(source), target);
    else if (stat.isDirectory()) copyTree(source, target, exclude);
    else if (stat.isFile()) copyFileSync(source, target);
    // Sockets, fifos and devices have no place in an image.
  }
}

export function stageEntry(
  root: string,
  entry: z.output<typeof entrySchema>,
  writeMode: Map<string, number>,
): void {
  const target = join(root, entry.path);
  mkdirSync(dirname(target), { recursive: true });
  switch (entry.type) {
    case "file":
      if (!existsSync(entry.from))
        throw new ImageInputError(`layer file ${entry.from} does not exist`);
      rmSync(target, { force: true });
      copyFileSync(entry.from, target);
      if (entry.mode !== undefined) writeMode.set(target, entry.mode);
      return;
    case "tree":
      if (!existsSync(entry.from) || !statSync(entry.from).isDirectory()) {
        throw new ImageInputError(`layer directory ${entry.from} does not exist`);
      }
      copyTree(entry.from, target, new Set(entry.exclude ?? []));
      return;
    case "content":
      writeFileSync(target, entry.content);
      if (entry.mode !== undefined) writeMode.set(target, entry.mode);
      return;
    case "symlink":
      rmSync(target, { force: true });
      symlinkSync(entry.target, target);
      return;
    case "dir":
      mkdirSync(target, { recursive: true });
      if (entry.mode !== undefined) writeMode.set(target, entry.mode);
      return;
  }
}

/**
 * Makes a staged tree reproducible: epoch mtimes, owner 0:0, modes 0755 for directories and
 * executables and 0644 for other files (unless an entry asked for a mode).
 */
export async function normalise(
  root: string,
  explicit: ReadonlyMap<string, number>,
): Promise<void> {
  const walk = async (dir: string): Promise<void> => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      const stat = lstatSync(path);
      if (stat.isDirectory()) {
        await chmod(path, explicit.get(path) ?? 0o755);
        await walk(path);
      } else if (!stat.isSymbolicLink()) {
        await chmod(path, explicit.get(path) ?? (stat.mode & 0o111 ? 0o755 : 0o644));
      }
      if (process.getuid?.() === 0) await lchown(path, 0, 0);
      await lutimes(path, 0, 0);
    }
  };
  await walk(root);
  await lutimes(root, 0, 0);
}
