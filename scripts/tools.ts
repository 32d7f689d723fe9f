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
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import { z } from "zod";

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

const goTools: readonly GoTool[] = [
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
    name: "kubernetes",
    binaries: ["kube-apiserver", "kube-controller-manager"],
    module: "k8s.io/kubernetes",
    version: KUBERNETES_VERSION,
    packages: [
      "k8s.io/kubernetes/cmd/kube-apiserver",
      "k8s.io/kubernetes/cmd/kube-controller-manager",
    ],
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
];

/**
 * Tools we would build but the Go module proxy reachable here refuses (HTTP 403 "This module version
 * is not available" for every version): the Node.js language host and the Kubernetes provider.
 * The installer still tries them, so they build on a machine whose proxy serves them.
 */
const optionalGoTools: readonly GoTool[] = [
  {
    name: "pulumi-language-nodejs",
    binaries: ["pulumi-language-nodejs"],
    module: "github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3",
    version: PULUMI_VERSION,
    packages: ["github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3"],
    wrapper: (goMod) => ({
      requires: [
        `github.com/pulumi/pulumi/sdk/v3 ${PULUMI_VERSION}`,
        `github.com/pulumi/pulumi/pkg/v3 ${PULUMI_VERSION}`,
      ],
      replaces: pulumiReplaces(goMod, PULUMI_VERSION),
    }),
    ldflags: `-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=${PULUMI_VERSION}`,
  },
  {
    name: "pulumi-resource-kubernetes",
    binaries: ["pulumi-resource-kubernetes"],
    module: "github.com/pulumi/pulumi-kubernetes/provider/v4",
    version: KUBERNETES_PROVIDER_VERSION,
    packages: ["github.com/pulumi/pulumi-kubernetes/provider/v4/cmd/pulumi-resource-kubernetes"],
    wrapper: (goMod) => ({
      requires: [],
      replaces: pulumiReplaces(goMod, KUBERNETES_PROVIDER_VERSION),
    }),
    ldflags: `-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=${KUBERNETES_PROVIDER_VERSION}`,
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
function moduleGoMod(module: string, version: string): { goMod?: string; error?: string } {
  const result = spawnSync("go", ["mod", "download", "-json", `${module}@${version}`], {
    env: goEnv(),
    encoding: "utf8",
  });
  const parsed = z
    .object({ GoMod: z.string().optional(), Error: z.string().optional() })
    .safeParse(JSON.parse(result.stdout || "{}"));
  if (!parsed.success) return { error: result.stderr || "go mod download printed no JSON" };
  if (parsed.data.Error !== undefined || parsed.data.GoMod === undefined) {
    return { error: parsed.data.Error ?? "no go.mod" };
  }
  return { goMod: readFileSync(parsed.data.GoMod, "utf8") };
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
    .update(JSON.stringify([tool.module, tool.version, tool.packages, tool.ldflags]))
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
  const lock = join(toolsDir(), ".lock");
  for (let waited = 0; ; waited++) {
    try {
      await writeFile(lock, String(process.pid), { flag: "wx" });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const holder = Number(await readFile(lock, "utf8").catch(() => "0"));
      if (!(holder > 0 && existsSync(`/proc/${holder}`))) {
        await rm(lock, { force: true });
        continue;
      }
      if (waited % 15 === 0) say(`waiting for another tools build (pid ${holder})…`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { force: true });
  }
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
  const { goMod, error } = moduleGoMod(tool.module, tool.version);
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
      ["build", "-mod=mod", "-ldflags", tool.ldflags, "-o", outDir + "/", ...tool.packages],
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
  const target = join(toolsBinDir(), "pulumi-resource-pulumi-nodejs");
  const entry = join(repoRoot, "node_modules", "@pulumi", "pulumi", "cmd", "dynamic-provider");
  const script = `#!/bin/sh\n# Generated by scripts/tools.ts\nexec node "${entry}" "$@"\n`;
  if (existsSync(target) && readFileSync(target, "utf8") === script) return;
  await mkdir(toolsBinDir(), { recursive: true });
  await writeFile(target, script, { mode: 0o755 });
}

/** The testbed stand-ins for tools the proxy refuses: a TypeScript plugin behind a shell shim. */
const STAND_INS = {
  "pulumi-resource-kubernetes": join(repoRoot, "scripts", "testbed-provider", "main.ts"),
  "pulumi-language-nodejs": join(repoRoot, "scripts", "testbed-language-host", "main.ts"),
} as const;
type StandIn = keyof typeof STAND_INS;

/** Second line of a stand-in shim: how the installer recognizes its own files. */
function standInMarker(binary: StandIn): string {
  return `# TESTBED STAND-IN for ${binary} (scripts/tools.ts)`;
}

/**
 * Where the Go module proxy refuses a plugin, put the testbed stand-in on PATH under its name: with
 * no plugin of that version in PULUMI_HOME and downloads disabled, the engine takes the one on PATH
 * (it says "using pulumi-resource-kubernetes from $PATH"). Never overwrites a real binary.
 */
async function ensureStandInShim(binary: StandIn): Promise<void> {
  const target = join(toolsBinDir(), binary);
  const marker = standInMarker(binary);
  if (existsSync(target) && !readFileSync(target, "utf8").includes(marker)) return;
  const script = [
    "#!/bin/sh",
    marker,
    `exec node --import "${require.resolve("tsx")}" "${STAND_INS[binary]}" "$@"`,
    "",
  ].join("\n");
  if (existsSync(target) && readFileSync(target, "utf8") === script) return;
  await mkdir(toolsBinDir(), { recursive: true });
  await writeFile(target, script, { mode: 0o755 });
  say(`${binary}: installed the TESTBED STAND-IN (${STAND_INS[binary]})`);
}

function isStandIn(tools: Tools, binary: StandIn): boolean {
  const target = join(tools.binDir, binary);
  return existsSync(target) && readFileSync(target, "utf8").includes(standInMarker(binary));
}

/** True when `pulumi-resource-kubernetes` on the tools PATH is the testbed stand-in. */
export function usesTestbedProvider(tools: Tools): boolean {
  return isStandIn(tools, "pulumi-resource-kubernetes");
}

/** True when `pulumi-language-nodejs` on the tools PATH is the testbed stand-in. */
export function usesTestbedLanguageHost(tools: Tools): boolean {
  return isStandIn(tools, "pulumi-language-nodejs");
}

export interface Tools {
  /** Directory to put first on PATH: pulumi, kube-apiserver, kube-controller-manager, plugins. */
  readonly binDir: string;
  readonly pulumi: string;
  readonly kubeApiserver: string;
  readonly kubeControllerManager: string;
  /** Tools the proxy refused (see the installer's output). */
  readonly unavailable: readonly string[];
}

/** Install everything; idempotent. */
export async function ensureTools(): Promise<Tools> {
  const started = Date.now();
  await mkdir(join(toolsDir(), "logs"), { recursive: true });
  say(`cache: ${toolsDir()}`);
  const debian = spawnSync("bash", [join(repoRoot, "scripts", "install-debian-packages.sh")], {
    stdio: "inherit",
  });
  if (debian.status !== 0) throw new Error("scripts/install-debian-packages.sh failed (see above)");
  const unavailable = await withLock(() => ensureGoTools());
  say(`ready in ${elapsed(started)}; add ${toolsBinDir()} to PATH`);
  const bin = toolsBinDir();
  const own = userPulumi();
  return {
    binDir: bin,
    pulumi: own ?? join(bin, "pulumi"),
    kubeApiserver: join(bin, "kube-apiserver"),
    kubeControllerManager: join(bin, "kube-controller-manager"),
    unavailable,
  };
}

async function ensureGoTools(): Promise<string[]> {
  const unavailable: string[] = [];
  const own = userPulumi();
  if (own !== undefined) say(`pulumi ${PULUMI_VERSION}: using ${own} from PATH`);
  for (const tool of goTools) {
    if (tool.name === "pulumi" && own !== undefined) continue;
    if (!(await ensureGoTool(tool)))
      throw new Error(`${tool.name} could not be fetched; see above`);
  }
  for (const tool of optionalGoTools) {
    if (!(await ensureGoTool(tool))) unavailable.push(tool.name);
  }
  await ensureNodejsProviderShim();
  for (const binary of Object.keys(STAND_INS) as StandIn[]) {
    if (unavailable.includes(binary)) await ensureStandInShim(binary);
  }
  if (unavailable.length > 0) {
    say("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    say(`!!! NOT AVAILABLE from the Go module proxy here: ${unavailable.join(", ")}`);
    say("!!! In their place, TESTBED STAND-INS on PATH (scripts/testbed-provider,");
    say("!!! scripts/testbed-language-host): what only the real ones do stays unverified here");
    say("!!! (the provider's await logic, diffs and SSA; see docs/readme/testbed.md).");
    say("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
  }
  return unavailable;
}

if (require.main === module) {
  ensureTools().catch((error: unknown) => {
    say(error instanceof Error ? error.message : String(error));
    process.exit(1);
  });
}
