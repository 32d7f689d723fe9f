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
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream, existsSync, readFileSync } from "node:fs";
import { copyFile, link, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import { Command } from "commander";
import { z } from "zod";
import { withPidLock } from "./pid-lock";

const repoRoot = resolve(__dirname, "..");

/** Pinned versions. `@pulumi/pulumi` and `@pulumi/kubernetes` come from package.json. */
const packageJson = z
  .object({
    dependencies: z.object({
      "@pulumi/pulumi": z.string().regex(/^\d+\.\d+\.\d+$/, "pin @pulumi/pulumi exactly"),
      "@pulumi/kubernetes": z.string().regex(/^\d+\.\d+\.\d+$/, "pin @pulumi/kubernetes exactly"),
    }),
  })
  .parse(JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")));

export const PULUMI_VERSION = `v${packageJson.dependencies["@pulumi/pulumi"]}`;
export const KUBERNETES_PROVIDER_VERSION = `v${packageJson.dependencies["@pulumi/kubernetes"]}`;
/** The newest Kubernetes release the Go toolchain here (go 1.26) builds. */
export const KUBERNETES_VERSION = "v1.36.3";

/** Root of the testbed cache: `$SHARDWORKS_CACHE` or `~/.cache/shardworks`. */
export function cacheRoot(): string {
  return process.env.SHARDWORKS_CACHE ?? join(homedir(), ".cache", "shardworks");
}
export function toolsDir(): string {
  return join(cacheRoot(), "tools");
}
export function toolsBinDir(): string {
  return join(toolsDir(), "bin");
}

/** A Go build: one wrapper module, one or more main packages. */
interface GoTool {
  readonly name: string;
  readonly binaries: readonly string[];
  /** The module the binaries come from, and its pinned version. */
  readonly module: string;
  readonly version: string;
  readonly packages: readonly string[];
  /** Extra requires/replaces for the wrapper module (computed from the real go.mod). */
  readonly wrapper: (goModOfModule: string) => { requires: string[]; replaces: string[] };
  readonly ldflags: string;
  /**
   * Files written into the wrapper module beside its go.mod (e.g. our own `main.go`), given the
   * downloaded module's directory; packages may then name `./<dir>` of the wrapper.
   */
  readonly files?: (moduleDir: string) => Record<string, string>;
}

/** `replace X => ./staging/src/X` (k8s.io/kubernetes) becomes `replace X => X v0.<minor>.<patch>`. */
export function kubernetesStagingReplaces(goMod: string, version: string): string[] {
  const staging = version.replace(/^v1\./, "v0.");
  const replaces: string[] = [];
  for (const match of goMod.matchAll(
    /^\s*(?:replace\s+)?(\S+)\s+=>\s+\.\/staging\/src\/(\S+)\s*$/gm,
  )) {
    replaces.push(`${match[1]} => ${match[2]} ${staging}`);
  }
  return replaces;
}

/**
 * Repeats a go.mod's replaces for a wrapper: relative paths (`../sdk`) become the published module at
 * the same version (`sdk/v3 => sdk/v3 v3.248.0`); module-to-module replaces are kept as they are.
 */
export function pulumiReplaces(goMod: string, version: string): string[] {
  const replaces: string[] = [];
  for (const match of goMod.matchAll(
    /^\s*(?:replace\s+)?(\S+)(?:\s+v\S+)?\s+=>\s+(\S+)(?:\s+(v\S+))?\s*$/gm,
  )) {
    const [, from, to, toVersion] = match;
    if (from === undefined || to === undefined) continue;
    if (to.startsWith(".")) replaces.push(`${from} => ${from} ${version}`);
    else if (toVersion !== undefined) replaces.push(`${from} => ${to} ${toVersion}`);
  }
  return replaces;
}

/** The Kubernetes components the testbed runs, all built from one k8s.io/kubernetes wrapper. */
export const KUBERNETES_BINARIES = [
  "kube-apiserver",
  "kube-controller-manager",
  "kube-scheduler",
  "kubelet",
  "kube-proxy",
] as const;

/** CoreDNS, with only the plugins cluster DNS uses (CoreDNS's own compile-time plugin selection). */
export const COREDNS_VERSION = "v1.14.2";
const COREDNS_PLUGINS = [
  "reload",
  "ready",
  "health",
  "errors",
  "log",
  "loadbalance",
  "cache",
  "kubernetes",
  "loop",
  "forward",
] as const;

/**
 * The Node.js language host: the newest `github.com/pulumi/pulumi/sdk/v3` served here that still
 * contains `nodejs/cmd/pulumi-language-nodejs` (the proxy serves v3.90.0 and v3.94.0 next, without
 * it; it moved to `sdk/nodejs/cmd/pulumi-language-nodejs/v3`, which the proxy refuses: 403).
 */
export const LANGUAGE_HOST_VERSION = "v3.68.0";

/**
 * The Kubernetes provider: the only version of `provider/v4` the proxy serves is this
 * pseudo-version (commit f47bc2d6f199 of 2026-01-15, between the v4.24 and v4.25 releases). It is
 * labelled with the version of `@pulumi/kubernetes` in package.json, which asks the engine for a
 * plugin of exactly that version.
 */
export const KUBERNETES_PROVIDER_MODULE_VERSION = "v4.0.0-20260115033456-f47bc2d6f199";
const PROVIDER_MODULE = "github.com/pulumi/pulumi-kubernetes/provider/v4";

/** `replace X => ../sdk` of the provider: the published X at the version its go.mod requires. */
export function requiredVersionReplaces(goMod: string): string[] {
  const replaces: string[] = [];
  for (const match of goMod.matchAll(/^\s*(?:replace\s+)?(\S+)\s+=>\s+(\.\S*)\s*$/gm)) {
    const from = match[1] ?? "";
    const required = new RegExp(`^\\s*${from.replace(/[.]/g, "\\.")}\\s+(v\\S+)`, "m").exec(goMod);
    if (required?.[1] === undefined) {
      throw new Error(`${from} is replaced by ${match[2] ?? ""} but not required in go.mod`);
    }
    replaces.push(`${from} => ${from} ${required[1]}`);
  }
  return replaces;
}

const goTools: readonly GoTool[] = [
  {
    name: "kubernetes",
    binaries: KUBERNETES_BINARIES,
    module: "k8s.io/kubernetes",
    version: KUBERNETES_VERSION,
    packages: KUBERNETES_BINARIES.map((b) => `k8s.io/kubernetes/cmd/${b}`),
    wrapper: (goMod) => ({
      requires: [],
      replaces: kubernetesStagingReplaces(goMod, KUBERNETES_VERSION),
    }),
    ldflags: [
      `-X k8s.io/component-base/version.gitVersion=${KUBERNETES_VERSION}`,
      `-X k8s.io/component-base/version.gitMajor=1`,
      `-X k8s.io/component-base/version.gitMinor=${KUBERNETES_VERSION.split(".")[1] ?? ""}`,
      `-X k8s.io/client-go/pkg/version.gitVersion=${KUBERNETES_VERSION}`,
    ].join(" "),
  },
  {
    name: "coredns",
    binaries: ["coredns"],
    module: "github.com/coredns/coredns",
    version: COREDNS_VERSION,
    packages: ["./cmd/coredns"],
    wrapper: () => ({ requires: [], replaces: [] }),
    ldflags: "",
    files: () => ({
      "cmd/coredns/main.go": [
        "// Generated by scripts/tools.ts: CoreDNS with the plugins of cluster DNS only.",
        "package main",
        "",
        "import (",
        '\t"github.com/coredns/coredns/core/dnsserver"',
        '\t"github.com/coredns/coredns/coremain"',
        ...COREDNS_PLUGINS.map((p) => `\t_ "github.com/coredns/coredns/plugin/${p}"`),
        ")",
        "",
        "func init() {",
        `\tdnsserver.Directives = []string{${COREDNS_PLUGINS.map((p) => `"${p}"`).join(", ")}}`,
        "}",
        "",
        "func main() { coremain.Run() }",
        "",
      ].join("\n"),
    }),
  },
  {
    // NetworkPolicy enforcement for the testbed's nodes (the bridge CNI enforces none): kube-router
    // with only its firewall on. v2.1.0 is the one version the Go module proxy serves.
    name: "kube-router",
    binaries: ["kube-router"],
    module: "github.com/cloudnativelabs/kube-router/v2",
    version: "v2.1.0",
    packages: ["github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"],
    wrapper: () => ({ requires: [], replaces: [] }),
    ldflags: "",
  },
  {
    name: "pulumi",
    binaries: ["pulumi"],
    module: "github.com/pulumi/pulumi/pkg/v3",
    version: PULUMI_VERSION,
    packages: ["github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"],
    wrapper: (goMod) => ({
      requires: [`github.com/pulumi/pulumi/sdk/v3 ${PULUMI_VERSION}`],
      replaces: pulumiReplaces(goMod, PULUMI_VERSION),
    }),
    ldflags: `-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=${PULUMI_VERSION}`,
  },
  {
    name: "pulumi-language-nodejs",
    binaries: ["pulumi-language-nodejs"],
    module: "github.com/pulumi/pulumi/sdk/v3",
    version: LANGUAGE_HOST_VERSION,
    packages: ["github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs"],
    wrapper: (goMod) => ({ requires: [], replaces: pulumiReplaces(goMod, LANGUAGE_HOST_VERSION) }),
    ldflags: `-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=${LANGUAGE_HOST_VERSION}`,
  },
  {
    name: "pulumi-resource-kubernetes",
    binaries: ["pulumi-resource-kubernetes"],
    module: PROVIDER_MODULE,
    version: KUBERNETES_PROVIDER_MODULE_VERSION,
    packages: ["./cmd/pulumi-resource-kubernetes"],
    wrapper: (goMod) => ({ requires: [], replaces: requiredVersionReplaces(goMod) }),
    ldflags: `-X ${PROVIDER_MODULE}/pkg/version.Version=${KUBERNETES_PROVIDER_VERSION.slice(1)}`,
    // The module's own main embeds files that its `go generate` writes and its zip lacks: the
    // schema with the version set, and the Terraform mapping. This main serves the same.
    files: (moduleDir) => {
      const cmd = join(moduleDir, "cmd", "pulumi-resource-kubernetes");
      const schema = z
        .record(z.string(), z.unknown())
        .parse(JSON.parse(readFileSync(join(cmd, "schema.json"), "utf8")));
      return {
        "cmd/pulumi-resource-kubernetes/schema-embed.json": JSON.stringify({
          ...schema,
          version: KUBERNETES_PROVIDER_VERSION.slice(1),
        }),
        "cmd/pulumi-resource-kubernetes/terraform-mapping-embed.json": JSON.stringify(
          JSON.parse(readFileSync(join(cmd, "terraform-mapping.json"), "utf8")),
        ),
        "cmd/pulumi-resource-kubernetes/main.go": [
          `// Generated by scripts/tools.ts: the provider's main over its public provider.Serve.`,
          "package main",
          "",
          "import (",
          '\t_ "embed"',
          "",
          `\t"${PROVIDER_MODULE}/pkg/provider"`,
          `\t"${PROVIDER_MODULE}/pkg/version"`,
          ")",
          "",
          "//go:embed schema-embed.json",
          "var pulumiSchema []byte",
          "",
          "//go:embed terraform-mapping-embed.json",
          "var terraformMapping []byte",
          "",
          'func main() { provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping) }',
          "",
        ].join("\n"),
      };
    },
  },
];

/** Environment for every `go` command: default module cache (shared between runs), trimmed paths. */
function goEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GOFLAGS: "-trimpath -buildvcs=false",
    GOPATH: process.env.GOPATH ?? join(homedir(), "go"),
    GOMODCACHE:
      process.env.GOMODCACHE ?? join(process.env.GOPATH ?? join(homedir(), "go"), "pkg", "mod"),
    // The checksum database reachable here does not answer for these (recent) module versions
    // (404 on lookup); the proxy is the only source either way. Override with SHARDWORKS_GOSUMDB.
    GOSUMDB: process.env.SHARDWORKS_GOSUMDB ?? "off",
    GOTOOLCHAIN: "local",
  };
}

function elapsed(startMs: number): string {
  const s = Math.round((Date.now() - startMs) / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

function say(message: string): void {
  process.stderr.write(`tools: ${message}\n`);
}

/** Run a command with output to a log file; reject with the log path and its tail on failure. */
async function run(
  command: string,
  args: string[],
  cwd: string,
  log: string,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const out = createWriteStream(log, { flags: "a" });
  out.write(`\n$ ${command} ${args.join(" ")}\n`);
  const code = await new Promise<number>((resolveRun, reject) => {
    const child = spawn("nice", ["-n", "10", command, ...args], {
      cwd,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.pipe(out, { end: false });
    child.stderr.pipe(out, { end: false });
    child.once("error", reject);
    child.once("close", (exitCode) => resolveRun(exitCode ?? 1));
  });
  await new Promise<void>((done) => out.end(done));
  if (code !== 0) {
    const tail = (await readFile(log, "utf8")).trimEnd().split("\n").slice(-15).join("\n");
    throw new Error(`${command} ${args[0] ?? ""} failed (exit ${code}); full log: ${log}\n${tail}`);
  }
}

/** Download a module (into the module cache) and return its go.mod text; undefined when refused. */
function moduleGoMod(
  module: string,
  version: string,
): { goMod?: string; dir?: string; error?: string } {
  const result = spawnSync("go", ["mod", "download", "-json", `${module}@${version}`], {
    env: goEnv(),
    encoding: "utf8",
  });
  const parsed = z
    .object({
      GoMod: z.string().optional(),
      Dir: z.string().optional(),
      Error: z.string().optional(),
    })
    .safeParse(JSON.parse(result.stdout || "{}"));
  if (!parsed.success) return { error: result.stderr || "go mod download printed no JSON" };
  if (parsed.data.Error !== undefined || parsed.data.GoMod === undefined) {
    return { error: parsed.data.Error ?? "no go.mod" };
  }
  return { goMod: readFileSync(parsed.data.GoMod, "utf8"), dir: parsed.data.Dir };
}

/** Per tool: the latest build and the first one seen by this cache (the cold build). */
const BuildTimes = z.record(
  z.string(),
  z.object({
    version: z.string(),
    seconds: z.number(),
    builtAt: z.string(),
    firstBuild: z.object({ seconds: z.number(), builtAt: z.string() }).optional(),
  }),
);

async function recordBuildTime(tool: GoTool, seconds: number): Promise<void> {
  const file = join(toolsDir(), "build-times.json");
  const parsed = existsSync(file)
    ? BuildTimes.safeParse(JSON.parse(await readFile(file, "utf8")))
    : undefined;
  const times = parsed?.success === true ? parsed.data : {};
  const builtAt = new Date().toISOString();
  const previous = times[tool.name];
  const firstBuild =
    previous?.firstBuild ??
    (previous ? { seconds: previous.seconds, builtAt: previous.builtAt } : { seconds, builtAt });
  times[tool.name] = { version: tool.version, seconds, builtAt, firstBuild };
  await writeFile(file, `${JSON.stringify(times, null, 2)}\n`);
}

function specHash(tool: GoTool): string {
  return createHash("sha256")
    .update(
      JSON.stringify([tool.module, tool.version, tool.packages, tool.ldflags, String(tool.files)]),
    )
    .digest("hex")
    .slice(0, 16);
}

/** The Go toolchain must be at least the `go` line of k8s.io/kubernetes at the pinned release. */
function checkGo(): void {
  const result = spawnSync("go", ["env", "GOVERSION"], { encoding: "utf8" });
  const match = /^go(\d+)\.(\d+)/.exec(result.stdout ?? "");
  if (result.error !== undefined || match === null) {
    throw new Error(
      "the Go toolchain is not on PATH: install Go 1.26 or newer (https://go.dev/dl)",
    );
  }
  const [major, minor] = [Number(match[1]), Number(match[2])];
  if (major < 1 || (major === 1 && minor < 26)) {
    throw new Error(
      `Go ${result.stdout.trim()} is too old: Kubernetes ${KUBERNETES_VERSION} needs Go 1.26 or newer`,
    );
  }
}

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

/** Build one Go tool unless its stamp is current. Returns false when the proxy refuses it. */
async function ensureGoTool(tool: GoTool): Promise<boolean> {
  const bin = toolsBinDir();
  const stamp = join(toolsDir(), "stamps", `${tool.name}.json`);
  const hash = specHash(tool);
  const current =
    existsSync(stamp) &&
    readFileSync(stamp, "utf8").includes(hash) &&
    tool.binaries.every((b) => existsSync(join(bin, b)));
  if (current) {
    say(`${tool.name} ${tool.version}: cached`);
    return true;
  }
  const started = Date.now();
  checkGo();
  const { goMod, dir, error } = moduleGoMod(tool.module, tool.version);
  if (goMod === undefined) {
    say(`${tool.name} ${tool.version}: the Go module proxy refused ${tool.module}: ${error ?? ""}`);
    return false;
  }
  const wrapperDir = join(toolsDir(), "wrappers", tool.name);
  await rm(wrapperDir, { recursive: true, force: true });
  await mkdir(wrapperDir, { recursive: true });
  const { requires, replaces } = tool.wrapper(goMod);
  const goVersion = /^go\s+(\S+)/m.exec(goMod)?.[1] ?? "1.22";
  await writeFile(
    join(wrapperDir, "go.mod"),
    [
      `// Generated by scripts/tools.ts: builds ${tool.packages.join(", ")} at ${tool.version}.`,
      `module shardworks.local/tools/${tool.name}`,
      "",
      `go ${goVersion}`,
      "",
      "require (",
      `\t${tool.module} ${tool.version}`,
      ...requires.map((r) => `\t${r}`),
      ")",
      "",
      ...(replaces.length > 0 ? ["replace (", ...replaces.map((r) => `\t${r}`), ")"] : []),
      "",
    ].join("\n"),
  );
  for (const [file, text] of Object.entries(tool.files?.(dir ?? "") ?? {})) {
    await mkdir(join(wrapperDir, file, ".."), { recursive: true });
    await writeFile(join(wrapperDir, file), text);
  }
  const log = join(toolsDir(), "logs", `${tool.name}.log`);
  await rm(log, { force: true });
  say(`${tool.name} ${tool.version}: building ${tool.binaries.join(", ")} (log: ${log})`);
  const ticker = setInterval(
    () => say(`${tool.name}: still building… ${elapsed(started)}`),
    30_000,
  );
  try {
    const env = goEnv();
    // -mod=mod lets go resolve the wrapper's full requirement graph and write go.sum.
    await run("go", ["mod", "download"], wrapperDir, log, env);
    const outDir = join(wrapperDir, "out");
    await mkdir(outDir, { recursive: true });
    await run(
      "go",
      // -s -w: no symbol table or DWARF (nobody debugs these here; less for the linker to write
      // for the 400 MB provider; not measured yet).
      [
        "build",
        "-mod=mod",
        "-ldflags",
        `-s -w ${tool.ldflags}`.trim(),
        "-o",
        outDir + "/",
        ...tool.packages,
      ],
      wrapperDir,
      log,
      env,
    );
    await mkdir(bin, { recursive: true });
    for (const b of tool.binaries) {
      await rm(join(bin, b), { force: true });
      await run("cp", [join(outDir, b), join(bin, b)], wrapperDir, log, env);
    }
    await rm(outDir, { recursive: true, force: true });
  } finally {
    clearInterval(ticker);
  }
  const seconds = Math.round((Date.now() - started) / 1000);
  await mkdir(join(toolsDir(), "stamps"), { recursive: true });
  await writeFile(stamp, JSON.stringify({ hash, version: tool.version, seconds }) + "\n");
  await recordBuildTime(tool, seconds);
  say(`${tool.name} ${tool.version}: built in ${elapsed(started)}`);
  return true;
}

/** `pulumi version` of a binary, or undefined. */
function pulumiVersionOf(binary: string): string | undefined {
  const result = spawnSync(binary, ["version"], { encoding: "utf8" });
  return result.status === 0 ? result.stdout.trim() : undefined;
}

/** The `pulumi` on PATH (outside our cache) when its version matches the pin. */
function userPulumi(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const candidate = join(dir, "pulumi");
    if (dir === toolsBinDir() || !existsSync(candidate)) continue;
    return pulumiVersionOf(candidate) === PULUMI_VERSION ? candidate : undefined;
  }
  return undefined;
}

/**
 * The dynamic-provider plugin shipped inside `@pulumi/pulumi` (the engine looks for
 * `pulumi-resource-pulumi-nodejs` on PATH; the CLI release tarball normally carries it).
 */
async function ensureNodejsProviderShim(): Promise<void> {
  await ensureSdkScriptShim("pulumi-resource-pulumi-nodejs", "dynamic-provider");
}

/** A plugin executable on the tools PATH that runs one of `@pulumi/pulumi`'s `cmd/` scripts. */
async function ensureSdkScriptShim(binary: string, sdkCommand: string): Promise<void> {
  const target = join(toolsBinDir(), binary);
  const entry = join(repoRoot, "node_modules", "@pulumi", "pulumi", "cmd", sdkCommand);
  const script = `#!/bin/sh\n# Generated by scripts/tools.ts\nexec node "${entry}" "$@"\n`;
  if (existsSync(target) && readFileSync(target, "utf8") === script) return;
  await mkdir(toolsBinDir(), { recursive: true });
  await writeFile(target, script, { mode: 0o755 });
}

/** Where the policy-pack language host lives: a PATH directory of its own (see below). */
export function policyBinDir(): string {
  return join(toolsDir(), "policy", "bin");
}

const POLICY_LANGUAGE_HOST = join(repoRoot, "scripts", "testbed-language-host", "main.ts");
const POLICY_LANGUAGE_HOST_MARKER =
  "# TESTBED STAND-IN for pulumi-language-nodejs, policy packs only (scripts/tools.ts)";

/**
 * The one stand-in left: the 3.248 engine starts a Node.js policy pack only through the language
 * host's `RunPlugin`, which no language host served here implements (v3.68.0 answers "not
 * supported"; v3.90.0 and v3.94.0, the only served versions after it, no longer contain the host).
 * `policy-bin/pulumi-language-nodejs` is the testbed's own host: its `RunPlugin` starts the pack,
 * every other call goes to the real host. Only runs with a policy pack put that directory first on
 * PATH.
 */
async function ensurePolicyLanguageHost(pulumi: string): Promise<void> {
  const target = join(policyBinDir(), "pulumi-language-nodejs");
  const script = [
    "#!/bin/sh",
    POLICY_LANGUAGE_HOST_MARKER,
    `export SHARDWORKS_REAL_LANGUAGE_HOST="${join(toolsBinDir(), "pulumi-language-nodejs")}"`,
    `exec node --import "${require.resolve("tsx")}" "${POLICY_LANGUAGE_HOST}" "$@"`,
    "",
  ].join("\n");
  if (existsSync(target) && readFileSync(target, "utf8") === script) return;
  await mkdir(policyBinDir(), { recursive: true });
  await writeFile(target, script, { mode: 0o755 });
  // The engine prefers a language host in its own executable's directory to one on PATH, so
  // policy runs use a `pulumi` in this directory too: a hard link of the real CLI (a symlink would
  // resolve back to bin/), a copy when the two are on different file systems.
  const cli = join(policyBinDir(), "pulumi");
  const [source, linked] = await Promise.all([stat(pulumi), stat(cli).catch(() => undefined)]);
  if (linked?.ino === source.ino && linked.dev === source.dev) return;
  await rm(cli, { force: true });
  await link(pulumi, cli).catch(() => copyFile(pulumi, cli));
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
