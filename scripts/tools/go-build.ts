/**
 * The build machinery: a tool is built from the Go module proxy in a generated wrapper module
 * unless its stamp (a hash of its recipe) is current, and its build time is recorded.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream, existsSync, readFileSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { toolsBinDir, toolsDir } from "./cache";
import { elapsed, say } from "./progress";
import { KUBERNETES_VERSION, type GoTool } from "./recipes";

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
    // The lowest priority: CI builds these while the tests run, and the tests' QEMU guests run
    // at nice 10 (TCG guests starved by a build at their own priority miss their timers).
    const child = spawn("nice", ["-n", "19", command, ...args], {
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

/** Build one Go tool unless its stamp is current. Returns false when the proxy refuses it. */
export async function ensureGoTool(tool: GoTool): Promise<boolean> {
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
