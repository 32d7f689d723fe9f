/**
 * What every Node.js image is made of: the base layer (init, the Node.js binary running this
 * script and its libraries, /etc), the installed production packages a program needs (found as
 * Node finds them) and the local files it imports (esbuild's import graph).
 */
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { z } from "zod";
import type { ImageSpec, LayerEntry } from "./build";
import { baseEtcEntries, ensureInitBinary, hostBinaryEntries } from "./rootfs";

/** The Node.js binary images are built from: the one running this script. */
export function nodeBinary(): string {
  return realpathSync(process.execPath);
}

/** The base layer of every Node.js image: init, node and its libraries, /etc. */
export function nodeBaseLayer(): ImageSpec["layers"][number] {
  return {
    name: `node-${process.version}`,
    entries: [
      ...baseEtcEntries(),
      { type: "file", path: "/sbin/init", from: ensureInitBinary(), mode: 0o755 },
      ...hostBinaryEntries(nodeBinary(), "/usr/bin/node"),
    ],
  };
}

export const packageJsonSchema = z.object({
  name: z.string().optional(),
  version: z.string().optional(),
  dependencies: z.record(z.string(), z.string()).optional(),
  optionalDependencies: z.record(z.string(), z.string()).optional(),
  peerDependencies: z.record(z.string(), z.string()).optional(),
});

/** Where Node would find package `name` from `fromDir` (walking up through node_modules). */
function locatePackage(name: string, fromDir: string): string | undefined {
  let dir = fromDir;
  for (;;) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/**
 * The installed packages `roots` need at run time, transitively (dependencies, and optional and
 * peer dependencies that are installed), as directories under `projectDir`'s node_modules.
 */
export function productionPackages(projectDir: string, roots: readonly string[]): string[] {
  const found = new Set<string>();
  const visit = (name: string, fromDir: string, required: boolean): void => {
    const dir = locatePackage(name, fromDir);
    if (dir === undefined) {
      if (required)
        throw new Error(`package ${name} is not installed (needed from ${fromDir}); run npm ci`);
      return;
    }
    const real = dir;
    if (found.has(real)) return;
    found.add(real);
    const pkg = packageJsonSchema.parse(
      JSON.parse(readFileSync(join(dir, "package.json"), "utf8")),
    );
    for (const dep of Object.keys(pkg.dependencies ?? {})) visit(dep, dir, true);
    for (const dep of Object.keys(pkg.optionalDependencies ?? {})) visit(dep, dir, false);
    for (const dep of Object.keys(pkg.peerDependencies ?? {})) visit(dep, dir, false);
  };
  for (const root of roots) visit(root, projectDir, true);
  return [...found].sort();
}

/**
 * Where package directory `dir` goes under the app directory: its path below `projectDir`
 * (`node_modules/a/node_modules/b`), or, for a package found in an ancestor's node_modules (a
 * workspace root), its path below that node_modules.
 */
function packagePathIn(projectDir: string, dir: string): string {
  const rel = relative(projectDir, dir);
  if (!rel.startsWith("..")) return rel;
  return dir.slice(dir.indexOf("/node_modules/") + 1);
}

/** Layer entries copying `packages` (from {@link productionPackages}) to the same place under `appDir`. */
export function packageEntries(
  projectDir: string,
  packages: readonly string[],
  appDir: string,
): LayerEntry[] {
  return packages.map((dir): LayerEntry => ({
    type: "tree",
    path: join(appDir, packagePathIn(projectDir, dir)),
    // node_modules may be a symlink (worktrees share one): copy the files it points at.
    from: realpathSync(dir),
    exclude: ["node_modules"],
  }));
}

/**
 * The local files `entry` imports, transitively, and the packages it imports: esbuild resolves
 * the graph (type-only imports drop out, as they do at run time).
 */
export async function importGraph(
  entries: readonly string[],
): Promise<{ files: string[]; packages: string[] }> {
  const esbuild = await import("esbuild");
  const result = await esbuild.build({
    entryPoints: [...entries],
    bundle: true,
    write: false,
    metafile: true,
    platform: "node",
    format: "cjs",
    packages: "external",
    logLevel: "silent",
    outdir: "/nonexistent",
  });
  const files = Object.keys(result.metafile.inputs).map((f) => resolve(f));
  const packages = new Set<string>();
  for (const input of Object.values(result.metafile.inputs)) {
    for (const imported of input.imports) {
      // Only bare specifiers name packages (esbuild also lists some relative type imports).
      if (imported.external !== true || !/^[@a-z0-9]/i.test(imported.path)) continue;
      if (imported.path.startsWith("node:")) continue;
      const parts = imported.path.split("/");
      const name = imported.path.startsWith("@") ? parts.slice(0, 2).join("/") : (parts[0] ?? "");
      if (!isBuiltin(name)) packages.add(name);
    }
  }
  return { files: files.sort(), packages: [...packages].sort() };
}

function isBuiltin(name: string): boolean {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require("node:module") as typeof import("node:module")).isBuiltin(name);
}
