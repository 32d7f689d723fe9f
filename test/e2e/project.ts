/**
 * What the e2e tests share to run Pulumi the way a user does: a project directory whose program
 * the real `pulumi-language-nodejs` runs (not an inline Automation API program), and the proof
 * that the engine used the tools cache's real plugins.
 */
import type { ExecutionContext } from "ava";
import { readFileSync } from "node:fs";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Tools } from "../../scripts/tools";

const repoRoot = resolve(__dirname, "..", "..");

/**
 * A project directory `dir` named `name` whose `index.ts` is `main` (by symlink), with the repo's
 * package.json, node_modules and tsconfig.json linked in, so modules resolve to the repo's real
 * paths and ts-node compiles with the repo's options.
 */
export async function linkProject(dir: string, name: string, main: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, "Pulumi.yaml"),
    `name: ${name}\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: index.ts\n`,
  );
  await symlink(main, join(dir, "index.ts"));
  for (const entry of ["package.json", "node_modules", "tsconfig.json"]) {
    await symlink(join(repoRoot, entry), join(dir, entry));
  }
}

/** Whether a file is an ELF executable (a built Go binary, not a script shim). */
function isElf(path: string): boolean {
  return readFileSync(path)
    .subarray(0, 4)
    .equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
}

/**
 * Assert that a run used the real plugins: the tools cache's `pulumi-language-nodejs` and
 * `pulumi-resource-kubernetes` are Go binaries, the engine says it took the provider from PATH
 * there, and (without a policy pack) it took no other language host.
 */
export function assertRealPlugins(
  t: ExecutionContext,
  tools: Tools,
  output: string,
  options: { provider?: boolean } = {},
): void {
  for (const plugin of ["pulumi-language-nodejs", "pulumi-resource-kubernetes"]) {
    t.true(isElf(join(tools.binDir, plugin)), `${plugin} in ${tools.binDir} is a built binary`);
  }
  if (options.provider !== false) {
    t.true(
      output.includes(
        `using pulumi-resource-kubernetes from $PATH at ${join(tools.binDir, "pulumi-resource-kubernetes")}`,
      ),
      "the engine ran the real Kubernetes provider from the tools cache",
    );
  }
  // The language host ships next to `pulumi` in the tools cache; any other is announced so.
  t.notRegex(output, /using pulumi-language-nodejs from \$PATH/);
}
