/** The OCI layout a build is written to with umoci, and what a pull of it transfers. */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { z } from "zod";
import { run } from "./command";
import type { imageSpecSchema } from "./spec";

const EPOCH = "1970-01-01T00:00:00Z";

/** The layout's manifest for `tag`: its digest and the bytes a pull transfers. */
export function manifestOf(layout: string, tag: string): { digest: string; size: number } {
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

/** Writes `image` as `layout:tag`: a new image, one `umoci insert` per layer, then the config. */
export async function buildLayout(
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
