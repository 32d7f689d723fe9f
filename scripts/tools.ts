/**
 * The testbed's tools installer (`npm run tools`): Debian packages, then the Go-built tools at
 * pinned versions, built from the Go module proxy into `~/.cache/shardworks/tools` (override with
 * `SHARDWORKS_CACHE`), never into the repo. Idempotent: a tool whose stamp matches its pinned spec
 * and whose binaries exist is not rebuilt, so a warm run takes about a second.
 *
 * Modules whose `go.mod` has `replace` directives (the Pulumi CLI, k8s.io/kubernetes) cannot be
 * `go install`ed: each is built from a small generated wrapper module that requires the module and
 * repeats its replaces, mapped to published versions.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { Command } from "commander";
import { withPidLock } from "./pid-lock";
import { policyBinDir, repoRoot, toolsBinDir, toolsDir } from "./tools/cache";
import { ensureGoTool } from "./tools/go-build";
import { elapsed, say } from "./tools/progress";
import {
  ensureNodejsProviderShim,
  ensurePolicyLanguageHost,
  userPulumi,
} from "./tools/pulumi-plugins";
import { goTools, KUBERNETES_BINARIES, PULUMI_VERSION } from "./tools/recipes";

export { cacheRoot, policyBinDir, toolsBinDir, toolsDir } from "./tools/cache";
export {
  COREDNS_VERSION,
  KUBERNETES_BINARIES,
  KUBERNETES_PROVIDER_MODULE_VERSION,
  KUBERNETES_PROVIDER_VERSION,
  KUBERNETES_VERSION,
  LANGUAGE_HOST_VERSION,
  PULUMI_VERSION,
  kubernetesStagingReplaces,
  pulumiReplaces,
  requiredVersionReplaces,
} from "./tools/recipes";

/**
 * One tools build at a time (e.g. two e2e test files starting together): an exclusive lock file
 * holding the builder's pid; a lock whose pid is gone is stale and taken over.
 */
async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  return withPidLock(
    join(toolsDir(), ".lock"),
    {
      pollMs: 2000,
      tellEvery: 15,
      onWait: (holder) => say(`waiting for another tools build (pid ${holder})…`),
    },
    fn,
  );
}

export interface Tools {
  /** Directory to put first on PATH: pulumi, the Kubernetes binaries, CoreDNS, the plugins. */
  readonly binDir: string;
  /** Put before `binDir` on PATH only for runs with a policy pack (its language host). */
  readonly policyBinDir: string;
  /** The CLI for runs with a policy pack: the same binary, beside the policy pack host. */
  readonly policyPulumi: string;
  readonly pulumi: string;
  /** Absolute paths of the Kubernetes components, by binary name. */
  readonly kubernetes: Readonly<Record<(typeof KUBERNETES_BINARIES)[number], string>>;
  readonly coredns: string;
}

/** Names of the Go tools `ensureTools({ only })` and `npm run tools -- <name…>` accept. */
export const GO_TOOL_NAMES: readonly string[] = goTools.map((t) => t.name);

/**
 * Install everything (or, with `only`, the named Go tools: CI builds `kubernetes` first, which
 * `npm test` needs, and the rest in the background while the tests run); idempotent.
 */
export async function ensureTools(options: { only?: readonly string[] } = {}): Promise<Tools> {
  const started = Date.now();
  await mkdir(join(toolsDir(), "logs"), { recursive: true });
  say(`cache: ${toolsDir()}`);
  const debian = spawnSync("bash", [join(repoRoot, "scripts", "install-debian-packages.sh")], {
    stdio: "inherit",
  });
  if (debian.status !== 0) throw new Error("scripts/install-debian-packages.sh failed (see above)");
  await withLock(() => ensureGoTools(options.only));
  say(`ready in ${elapsed(started)}; add ${toolsBinDir()} to PATH`);
  const bin = toolsBinDir();
  const own = userPulumi();
  return {
    binDir: bin,
    policyBinDir: policyBinDir(),
    policyPulumi: join(policyBinDir(), "pulumi"),
    pulumi: own ?? join(bin, "pulumi"),
    kubernetes: Object.fromEntries(KUBERNETES_BINARIES.map((b) => [b, join(bin, b)])) as Record<
      (typeof KUBERNETES_BINARIES)[number],
      string
    >,
    coredns: join(bin, "coredns"),
  };
}

async function ensureGoTools(only: readonly string[] | undefined): Promise<void> {
  const own = userPulumi();
  if (own !== undefined) say(`pulumi ${PULUMI_VERSION}: using ${own} from PATH`);
  for (const tool of goTools.filter((t) => only === undefined || only.includes(t.name))) {
    if (tool.name === "pulumi" && own !== undefined) continue;
    if (!(await ensureGoTool(tool))) {
      throw new Error(`${tool.name} could not be fetched from the Go module proxy; see above`);
    }
  }
  await ensureNodejsProviderShim();
  // The policy host sits beside a link of the CLI: only once there is a CLI (`npm run tools --
  // kubernetes` builds none).
  const cli = userPulumi() ?? join(toolsBinDir(), "pulumi");
  if (existsSync(cli)) await ensurePolicyLanguageHost(cli);
  // Left by earlier installers: the policy analyzer shim and the stand-ins' shims (never a binary).
  for (const stale of ["pulumi-analyzer-policy-nodejs"]) {
    const path = join(toolsBinDir(), stale);
    if (existsSync(path) && readFileSync(path, "utf8").includes("Generated by scripts/tools.ts")) {
      await rm(path);
    }
  }
}

if (require.main === module) {
  new Command("npm run tools --")
    .description(
      `Build the tools the tests and the testbed use from the Go module proxy, into ${toolsDir()} (cached)`,
    )
    .argument("[names...]", `tools to build (default: all): ${GO_TOOL_NAMES.join(", ")}`)
    .action(async (only: string[]) => {
      const unknown = only.filter((name) => !GO_TOOL_NAMES.includes(name));
      if (unknown.length > 0) {
        say(
          `unknown tool ${unknown.join(", ")}: name one of ${GO_TOOL_NAMES.join(", ")}, or none for all`,
        );
        process.exit(2);
      }
      await ensureTools(only.length > 0 ? { only } : {});
    })
    .parseAsync()
    .catch((error: unknown) => {
      say(error instanceof Error ? error.message : String(error));
      process.exit(1);
    });
}
