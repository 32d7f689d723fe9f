/**
 * The builder's cache: the input hash of a build, the versioned state directory (layouts, build
 * records, locks) under `~/.cache/shardworks/images`, the records of pushed builds and the
 * per-name build lock.
 */
import { createHash } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  statSync,
} from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { acquirePidLock } from "../pid-lock";
import { cacheRoot } from "../tools";
import { ImageInputError, type imageSpecSchema } from "./spec";

/** Bumped when the builder's output for the same inputs changes (it is part of the input hash). */
const BUILDER_VERSION = "2";

const sha256Of = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

/**
 * The build's input hash, from the sources where they are: the builder version, the config and,
 * per layer, every entry's path, mode and content (trees walked in sorted order, `exclude`d
 * names skipped, exactly as staging copies them).
 */
export async function hashInputs(image: z.output<typeof imageSpecSchema>): Promise<string> {
  const hash = createHash("sha256").update(`builder ${BUILDER_VERSION}\n`);
  hash.update(`config ${JSON.stringify(image.config)}\n`);
  const fileLine = async (path: string, from: string, mode: number | undefined) => {
    const stat = statSync(from);
    const normalised = mode ?? (stat.mode & 0o111 ? 0o755 : 0o644);
    return `F ${path} ${normalised.toString(8)} ${sha256Of(await readFile(from))}\n`;
  };
  const walk = async (from: string, path: string, exclude: ReadonlySet<string>) => {
    for (const name of readdirSync(from).sort()) {
      if (exclude.has(name)) continue;
      const source = join(from, name);
      const stat = lstatSync(source);
      if (stat.isSymbolicLink()) hash.update(`L ${path}/${name} ${readlinkSync(source)}\n`);
      else if (stat.isDirectory()) {
        hash.update(`D ${path}/${name}\n`);
        await walk(source, `${path}/${name}`, exclude);
      } else if (stat.isFile()) hash.update(await fileLine(`${path}/${name}`, source, undefined));
    }
  };
  for (const layer of image.layers) {
    hash.update(`layer ${layer.name}\n`);
    for (const entry of layer.entries) {
      switch (entry.type) {
        case "file":
          if (!existsSync(entry.from)) {
            throw new ImageInputError(`layer file ${entry.from} does not exist`);
          }
          hash.update(await fileLine(entry.path, entry.from, entry.mode));
          break;
        case "tree":
          if (!existsSync(entry.from) || !statSync(entry.from).isDirectory()) {
            throw new ImageInputError(`layer directory ${entry.from} does not exist`);
          }
          hash.update(`T ${entry.path}\n`);
          await walk(entry.from, entry.path, new Set(entry.exclude ?? []));
          break;
        case "content":
          hash.update(`C ${entry.path} ${String(entry.mode)} ${sha256Of(entry.content)}\n`);
          break;
        case "symlink":
          hash.update(`L ${entry.path} ${entry.target}\n`);
          break;
        case "dir":
          hash.update(`D ${entry.path} ${String(entry.mode)}\n`);
          break;
      }
    }
  }
  return hash.digest("hex");
}

/** Where layouts and build records live: `~/.cache/shardworks/images`. */
export function imagesCacheDir(): string {
  return join(cacheRoot(), "images");
}

/**
 * This builder version's layouts, records and locks. Versioned: helpers' worktrees may run other
 * versions of this file against the same cache, and must not evict each other's builds.
 */
export function stateDir(): string {
  return join(imagesCacheDir(), `builder-${BUILDER_VERSION}`);
}

/** Pushed builds, keyed `<registry> <input hash>`: several per name (branches switch back and forth). */
const recordSchema = z.record(
  z.string(),
  z.object({ inputHash: z.string(), digest: z.string(), tag: z.string(), size: z.number() }),
);
export const MAX_RECORDS = 20;

export function recordPath(name: string): string {
  return join(stateDir(), "records", `${name.replaceAll("/", "__")}.json`);
}

export function readRecords(name: string): z.output<typeof recordSchema> {
  try {
    return recordSchema.parse(JSON.parse(readFileSync(recordPath(name), "utf8")));
  } catch {
    return {};
  }
}

/**
 * Takes the build lock of `name` (a pid file created exclusively; a lock whose process is gone
 * is taken over) and returns its release.
 */
export async function lockName(
  name: string,
  progress: (line: string) => void,
): Promise<() => Promise<void>> {
  const dir = join(stateDir(), "locks");
  mkdirSync(dir, { recursive: true });
  return acquirePidLock(join(dir, `${name.replaceAll("/", "__")}.lock`), {
    pollMs: 250,
    onWait: (holder) => progress(`${name}: waiting for the build in process ${holder}`),
  });
}
