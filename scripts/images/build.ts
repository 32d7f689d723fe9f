/**
 * The one image builder: a declarative spec (layers of files, image config) → an OCI image built
 * with umoci in a cached OCI layout → pushed with skopeo to the testbed registry, or to any
 * registry a platform team names. No Docker, no network beyond that registry.
 *
 * Reproducible: each layer is staged in a fresh directory with every mtime at the epoch, owners
 * 0:0 and modes normalised; umoci writes its tar in sorted order and the config's and history's
 * `created` are the epoch, so the same inputs give the same manifest digest on any machine.
 *
 * Cached: the staged layers and the config are hashed; when that input hash matches the last
 * build pushed to the same registry and the registry still has the manifest, nothing is built.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { chmod, lchown, lutimes, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, posix } from "node:path";
import { z } from "zod";
import { acquirePidLock } from "../pid-lock";
import { ensureRegistry, REGISTRY_PREFIX } from "../registry";
import { cacheRoot } from "../tools";

/** Bumped when the builder's output for the same inputs changes (it is part of the input hash). */
const BUILDER_VERSION = "2";
const EPOCH = "1970-01-01T00:00:00Z";

// ---------------------------------------------------------------------------------------------
// The spec
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Running tools
// ---------------------------------------------------------------------------------------------

/** Runs a command, resolving with stdout; rejects with the command and its last output lines. */
export function run(command: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    child.once("error", (e) =>
      reject(
        new Error(
          `${command}: ${e.message} (is it installed? see scripts/install-debian-packages.sh)`,
        ),
      ),
    );
    child.once("close", (code) => {
      const stdout = Buffer.concat(out).toString();
      if (code === 0) return resolve(stdout);
      const tail = `${stdout}${Buffer.concat(err).toString()}`.trim().split("\n").slice(-8);
      reject(
        new Error(
          `${command} ${args.join(" ")} failed (exit ${String(code)}):\n${tail.join("\n")}`,
        ),
      );
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Staging a layer
// ---------------------------------------------------------------------------------------------

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

function stageEntry(
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
async function normalise(root: string, explicit: ReadonlyMap<string, number>): Promise<void> {
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

const sha256Of = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

/**
 * The build's input hash, from the sources where they are: the builder version, the config and,
 * per layer, every entry's path, mode and content (trees walked in sorted order, `exclude`d
 * names skipped, exactly as staging copies them).
 */
async function hashInputs(image: z.output<typeof imageSpecSchema>): Promise<string> {
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

// ---------------------------------------------------------------------------------------------
// The cache
// ---------------------------------------------------------------------------------------------

/** Where layouts and build records live: `~/.cache/shardworks/images`. */
export function imagesCacheDir(): string {
  return join(cacheRoot(), "images");
}

/**
 * This builder version's layouts, records and locks. Versioned: helpers' worktrees may run other
 * versions of this file against the same cache, and must not evict each other's builds.
 */
function stateDir(): string {
  return join(imagesCacheDir(), `builder-${BUILDER_VERSION}`);
}

/** Pushed builds, keyed `<registry> <input hash>`: several per name (branches switch back and forth). */
const recordSchema = z.record(
  z.string(),
  z.object({ inputHash: z.string(), digest: z.string(), tag: z.string(), size: z.number() }),
);
const MAX_RECORDS = 20;

function recordPath(name: string): string {
  return join(stateDir(), "records", `${name.replaceAll("/", "__")}.json`);
}

function readRecords(name: string): z.output<typeof recordSchema> {
  try {
    return recordSchema.parse(JSON.parse(readFileSync(recordPath(name), "utf8")));
  } catch {
    return {};
  }
}

// ---------------------------------------------------------------------------------------------
// Build and push
// ---------------------------------------------------------------------------------------------

function skopeoDestFlags(target: z.output<typeof pushTargetSchema>, local: boolean): string[] {
  const flags = [`--dest-tls-verify=${String(target.tlsVerify ?? !local)}`];
  if (target.creds !== undefined) flags.push("--dest-creds", target.creds);
  if (target.authfile !== undefined) flags.push("--dest-authfile", target.authfile);
  if (target.certDir !== undefined) flags.push("--dest-cert-dir", target.certDir);
  return flags;
}

function skopeoSourceFlags(target: z.output<typeof pushTargetSchema>, local: boolean): string[] {
  const flags = [`--tls-verify=${String(target.tlsVerify ?? !local)}`];
  if (target.creds !== undefined) flags.push("--creds", target.creds);
  if (target.authfile !== undefined) flags.push("--authfile", target.authfile);
  if (target.certDir !== undefined) flags.push("--cert-dir", target.certDir);
  return flags;
}

/** Whether the registry serves `repo@digest` (a cache hit is only trusted when it does). */
async function remoteHas(repo: string, digest: string, flags: readonly string[]): Promise<boolean> {
  try {
    await run("skopeo", ["inspect", "--raw", ...flags, `docker://${repo}@${digest}`]);
    return true;
  } catch {
    return false;
  }
}

/** The layout's manifest for `tag`: its digest and the bytes a pull transfers. */
function manifestOf(layout: string, tag: string): { digest: string; size: number } {
  const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as {
    manifests: { digest: string; annotations?: Record<string, string> }[];
  };
  const entry = index.manifests.find(
    (m) => m.annotations?.["org.opencontainers.image.ref.name"] === tag,
  );
  if (entry === undefined) throw new Error(`tag ${tag} missing from ${layout}`);
  const manifest = JSON.parse(
    readFileSync(join(layout, "blobs", "sha256", entry.digest.slice(7)), "utf8"),
  ) as { config: { size: number }; layers: { size: number }[] };
  const size = manifest.layers.reduce((sum, l) => sum + l.size, manifest.config.size);
  return { digest: entry.digest, size };
}

/**
 * Builds `spec` (unless the cache has it) and pushes it; returns the pinned reference. Throws an
 * {@link ImageInputError} for a bad spec or target, naming the field.
 */
export async function buildImage(spec: ImageSpec, options: BuildOptions = {}): Promise<BuiltImage> {
  const image = parseImageSpec(spec);
  const local = options.target === undefined;
  const target = parsePushTarget(
    options.target ?? { registry: `${(await ensureRegistry()).host}/${REGISTRY_PREFIX}` },
  );
  const progress =
    options.progress ?? ((line: string) => process.stderr.write(`images: ${line}\n`));
  const repo = `${target.registry}/${image.name}`;
  mkdirSync(join(stateDir(), "records"), { recursive: true });
  // One build of a name at a time per machine (helpers and tests share the cache).
  const release = await lockName(image.name, progress);
  const staging = await mkdtemp(join(tmpdir(), "sw-image-"));
  try {
    // The input hash is computed from the sources in place: a cache hit stages nothing.
    const inputHash = await hashInputs(image);
    const tag = image.tag ?? `in-${inputHash.slice(0, 12)}`;
    const layoutTag = `in-${inputHash.slice(0, 32)}`;
    const layout = join(stateDir(), "layouts", image.name.replaceAll("/", "__"));
    const records = readRecords(image.name);
    const key = `${target.registry} ${inputHash}`;
    const known = records[key];
    const sourceFlags = skopeoSourceFlags(target, local);
    if (
      options.force !== true &&
      known !== undefined &&
      (await remoteHas(repo, known.digest, sourceFlags))
    ) {
      progress(`${image.name}: up to date (${known.digest.slice(0, 19)}…)`);
      return {
        ref: `${repo}@${known.digest}`,
        digest: known.digest,
        tagged: `${repo}:${known.tag}`,
        size: known.size,
        cached: true,
        layout,
        layoutTag,
      };
    }
    const hasLayout =
      existsSync(join(layout, "index.json")) &&
      (await run("umoci", ["ls", "--layout", layout])).split("\n").includes(layoutTag);
    if (!hasLayout || options.force === true) {
      progress(`${image.name}: building ${image.layers.length} layer(s) with umoci`);
      const layerDirs: string[] = [];
      for (const [i, layer] of image.layers.entries()) {
        const dir = join(staging, `layer${i}`);
        mkdirSync(dir);
        // Explicit modes asked for by entries, applied in place of the normalised ones.
        const modes = new Map<string, number>();
        for (const entry of layer.entries) stageEntry(dir, entry, modes);
        await normalise(dir, modes);
        layerDirs.push(dir);
      }
      await buildLayout(layout, layoutTag, image, layerDirs);
    }
    const { digest, size } = manifestOf(layout, layoutTag);
    progress(`${image.name}: pushing ${digest.slice(0, 19)}… (${formatSize(size)}) to ${repo}`);
    const digestFile = join(staging, "digest");
    await run("skopeo", [
      "copy",
      "--quiet",
      ...skopeoDestFlags(target, local),
      "--digestfile",
      digestFile,
      `oci:${layout}:${layoutTag}`,
      `docker://${repo}:${tag}`,
    ]);
    const pushed = (await readFile(digestFile, "utf8")).trim();
    if (pushed !== digest) {
      // skopeo converts only when the registry refuses OCI manifests; the pinned ref is what it has.
      progress(`${image.name}: the registry stored it as ${pushed} (converted from ${digest})`);
    }
    // Newest last; the oldest go beyond MAX_RECORDS.
    const fresh = readRecords(image.name);
    delete fresh[key];
    fresh[key] = { inputHash, digest: pushed, tag, size };
    const kept = Object.entries(fresh).slice(-MAX_RECORDS);
    await writeFile(
      recordPath(image.name),
      `${JSON.stringify(Object.fromEntries(kept), null, 2)}\n`,
    );
    return {
      ref: `${repo}@${pushed}`,
      digest: pushed,
      tagged: `${repo}:${tag}`,
      size,
      cached: false,
      layout,
      layoutTag,
    };
  } finally {
    await rm(staging, { recursive: true, force: true });
    await release();
  }
}

/**
 * Takes the build lock of `name` (a pid file created exclusively; a lock whose process is gone
 * is taken over) and returns its release.
 */
async function lockName(
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

/** Writes `image` as `layout:tag`: a new image, one `umoci insert` per layer, then the config. */
async function buildLayout(
  layout: string,
  tag: string,
  image: z.output<typeof imageSpecSchema>,
  layerDirs: readonly string[],
): Promise<void> {
  if (!existsSync(join(layout, "index.json"))) {
    mkdirSync(dirname(layout), { recursive: true });
    await run("umoci", ["init", "--layout", layout]);
  }
  // A few builds of a name are kept (switching branches back is then only a push); beyond that
  // the older tags go, and their blobs with `umoci gc`.
  const tags = (await run("umoci", ["ls", "--layout", layout])).split("\n").filter(Boolean);
  if (tags.length >= 4 || tags.includes(tag)) {
    for (const old of tags.length >= 4 ? tags : [tag]) {
      await run("umoci", ["rm", "--image", `${layout}:${old}`]);
    }
    await run("umoci", ["gc", "--layout", layout]);
  }
  const ref = `${layout}:${tag}`;
  await run("umoci", ["new", "--image", ref]);
  const rootless = process.getuid?.() === 0 ? [] : ["--rootless"];
  for (const [i, dir] of layerDirs.entries()) {
    await run("umoci", [
      "insert",
      ...rootless,
      "--image",
      ref,
      "--history.created",
      EPOCH,
      "--history.created_by",
      `shardworks images: layer ${image.layers[i]?.name ?? String(i)}`,
      dir,
      "/",
    ]);
  }
  const c = image.config;
  const args = ["config", "--image", ref, "--no-history", "--created", EPOCH];
  args.push("--architecture", "amd64", "--os", "linux");
  for (const [key, value] of Object.entries(c.env ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
    args.push("--config.env", `${key}=${value}`);
  }
  for (const part of c.entrypoint ?? []) args.push("--config.entrypoint", part);
  for (const part of c.cmd ?? []) args.push("--config.cmd", part);
  if (c.workdir !== undefined) args.push("--config.workingdir", c.workdir);
  if (c.user !== undefined) args.push("--config.user", c.user);
  if (c.stopSignal !== undefined) args.push("--config.stopsignal", c.stopSignal);
  for (const port of c.exposedPorts ?? []) {
    args.push("--config.exposedports", typeof port === "number" ? `${port}/tcp` : port);
  }
  for (const [key, value] of Object.entries(c.labels ?? {}).sort(([a], [b]) =>
    a.localeCompare(b),
  )) {
    args.push("--config.label", `${key}=${value}`);
  }
  await run("umoci", args);
}

/** `1.2 MiB`-style size for progress lines and reports. */
export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
