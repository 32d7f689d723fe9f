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
import { existsSync, mkdirSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureRegistry, REGISTRY_PREFIX } from "../registry";
import { hashInputs, lockName, MAX_RECORDS, readRecords, recordPath, stateDir } from "./cache";
import { run } from "./command";
import { remoteHas, skopeoDestFlags, skopeoSourceFlags } from "./skopeo";
import {
  parseImageSpec,
  parsePushTarget,
  type BuildOptions,
  type BuiltImage,
  type ImageSpec,
} from "./spec";
import { normalise, stageEntry } from "./stage";
import { buildLayout, manifestOf } from "./umoci";

export { imagesCacheDir } from "./cache";
export {
  ImageInputError,
  parsePushTarget,
  type BuildOptions,
  type BuiltImage,
  type ImageSpec,
  type LayerEntry,
  type PushTarget,
} from "./spec";

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

/** `1.2 MiB`-style size for progress lines and reports. */
export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
