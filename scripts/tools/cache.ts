/** Where the testbed's tools live: the testbed cache, never the repo. */
import { homedir } from "node:os";
import { join, resolve } from "node:path";

/** The repository root (scripts and `node_modules` are found from it). */
export const repoRoot = resolve(__dirname, "..", "..");

/** Root of the testbed cache: `$SHARDWORKS_CACHE` or `~/.cache/shardworks`. */
export function cacheRoot(): string {
  return process.env.SHARDWORKS_CACHE ?? join(homedir(), ".cache", "shardworks");
}

/** The tools cache: binaries, stamps, wrapper modules, build logs. */
export function toolsDir(): string {
  return join(cacheRoot(), "tools");
}

/** The tools' binaries (put first on PATH). */
export function toolsBinDir(): string {
  return join(toolsDir(), "bin");
}

/** Where the policy-pack language host lives: a PATH directory of its own (see `pulumi-plugins.ts`). */
export function policyBinDir(): string {
  return join(toolsDir(), "policy", "bin");
}
