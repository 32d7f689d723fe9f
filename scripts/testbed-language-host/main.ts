/**
 * The TESTBED stand-in for `pulumi-language-nodejs`, used only where the real language host cannot
 * be built (the Go module proxy here refuses it). `scripts/tools.ts` installs a shim of that name on
 * the tools PATH that runs this file. It speaks the language host protocol through `@pulumi/pulumi`'s
 * generated gRPC stubs (`@pulumi/pulumi/proto/language_grpc_pb`) and runs a program the way the real
 * host does: `node <@pulumi/pulumi>/cmd/run --monitor … --engine … <program>`, with the stack's
 * config in `PULUMI_CONFIG`. TypeScript is loaded with `tsx` (`node --import tsx`), not ts-node.
 * `RunPlugin` (how the engine starts a Node.js policy pack when a `nodejs` language host is present)
 * runs `node <@pulumi/pulumi>/cmd/run-policy-pack <args…> <pack directory>` in the pack's directory,
 * as the real host does for an analyzer, and streams the pack's stdout/stderr back to the engine.
 *
 * What it does NOT do, unlike the real host: report required plugins/packages (the engine loads
 * plugins on demand; downloads are off in the testbed anyway), install dependencies, `pulumi about`
 * details, program dependencies, `pulumi new`/convert/package generation, debugger attach, and in
 * RunPlugin the real host's policy proxy (which asks the engine for the stack's config and passes it
 * to the pack as PULUMI_CONFIG/PULUMI_NODEJS_STACK/…; our pack reads no stack config) and `nodeargs`.
 */
import { servePlugin, unary } from "../testbed-plugin";
import * as grpc from "@grpc/grpc-js";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { Empty } from "google-protobuf/google/protobuf/empty_pb";
import * as enginerpc from "@pulumi/pulumi/proto/engine_grpc_pb";
import * as engineproto from "@pulumi/pulumi/proto/engine_pb";
import * as langrpc from "@pulumi/pulumi/proto/language_grpc_pb";
import * as langproto from "@pulumi/pulumi/proto/language_pb";
import * as plugproto from "@pulumi/pulumi/proto/plugin_pb";
import { z } from "zod";

const SDK_VERSION = z
  .object({ version: z.string() })
  .parse(JSON.parse(readFileSync(require.resolve("@pulumi/pulumi/package.json"), "utf8")))
  .version.replace(/^v/, "");
/** `@pulumi/pulumi`'s program runner, the same entry the real language host starts. */
const RUN_ENTRY = join(require.resolve("@pulumi/pulumi/package.json"), "..", "cmd", "run");
const TSX = require.resolve("tsx");
/** cmd/run's exit code for "the program failed and already reported why". */
const EXIT_REPORTED = 32;
const BANNER = [
  "!".repeat(88),
  "!!! TESTBED STAND-IN for pulumi-language-nodejs (scripts/testbed-language-host), NOT the real",
  "!!! language host: runs @pulumi/pulumi's cmd/run with tsx; no plugin/dependency reporting.",
  "!".repeat(88),
].join("\n");

/** The engine's plugin kind for a policy pack (`apitype.AnalyzerPlugin`). */
const ANALYZER_KIND = "analyzer";

/** The arguments cmd/run takes (see `@pulumi/pulumi/cmd/run/index.js`). */
function runArgs(req: langproto.RunRequest, engineAddress: string | undefined): string[] {
  const info = req.getInfo();
  const programDir = info?.getProgramDirectory() || req.getPwd();
  const entry = info?.getEntryPoint() || req.getProgram() || ".";
  const program = isAbsolute(entry) ? entry : join(programDir, entry);
  const args = [
    "--import",
    TSX,
    RUN_ENTRY,
    `--monitor=${req.getMonitorAddress()}`,
    `--project=${req.getProject()}`,
    `--stack=${req.getStack()}`,
    `--pwd=${req.getPwd()}`,
    `--organization=${req.getOrganization()}`,
  ];
  if (engineAddress !== undefined) args.push(`--engine=${engineAddress}`);
  if (info?.getRootDirectory()) args.push(`--root-directory=${info.getRootDirectory()}`);
  if (req.getDryrun()) args.push("--dry-run");
  if (req.getParallel() > 0) args.push(`--parallel=${req.getParallel()}`);
  return [...args, program, ...req.getArgsList()];
}

async function run(
  req: langproto.RunRequest,
  engineAddress: string | undefined,
): Promise<langproto.RunResponse> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PULUMI_CONFIG: JSON.stringify(Object.fromEntries(req.getConfigMap().entries())),
    PULUMI_CONFIG_SECRET_KEYS: JSON.stringify(req.getConfigsecretkeysList()),
  };
  const child = spawn(process.execPath, runArgs(req, engineAddress), {
    cwd: req.getPwd() || process.cwd(),
    env,
    // The program's output goes where the real host sends it: this plugin's stdout/stderr, which
    // the engine shows.
    stdio: ["ignore", "inherit", "inherit"],
  });
  const code = await new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0)));
  });
  const response = new langproto.RunResponse();
  if (code === EXIT_REPORTED) return response.setBail(true);
  if (code !== 0) return response.setError(`the Node.js program exited with code ${code}`);
  return response;
}

/** The `K=V` environment list of a RunPluginRequest as an object (inherited env if it is empty). */
function pluginEnv(list: string[]): NodeJS.ProcessEnv {
  if (list.length === 0) return { ...process.env };
  const env: NodeJS.ProcessEnv = {};
  for (const entry of list) {
    const at = entry.indexOf("=");
    if (at > 0) env[entry.slice(0, at)] = entry.slice(at + 1);
  }
  return env;
}

/**
 * RunPlugin: start a Node.js plugin and stream its output back. For a policy pack (kind `analyzer`)
 * that is `@pulumi/pulumi/cmd/run-policy-pack <args…> <pack dir>` (args: the engine's address),
 * resolved from the pack's directory like Node resolves it (so a pack without node_modules uses the
 * enclosing project's SDK) and run in the pack's directory; any other plugin is
 * `cmd/run-plugin <dir> <args…>` in `pwd`. The engine reads the pack's port from its stdout; it ends
 * the plugin by cancelling the call, which kills the process.
 */
function runPlugin(
  call: grpc.ServerWritableStream<langproto.RunPluginRequest, langproto.RunPluginResponse>,
  onStart: (what: string) => void,
): void {
  const req = call.request;
  const programDir = req.getInfo()?.getProgramDirectory() || req.getPwd();
  const analyzer = req.getKind() === ANALYZER_KIND;
  const command = analyzer ? "run-policy-pack" : "run-plugin";
  let entry: string;
  try {
    entry = require.resolve(`@pulumi/pulumi/cmd/${command}`, { paths: [programDir] });
  } catch {
    entry = join(require.resolve("@pulumi/pulumi/package.json"), "..", "cmd", command);
  }
  const args = analyzer
    ? [entry, ...req.getArgsList(), programDir]
    : [entry, programDir, ...req.getArgsList()];
  onStart(`RunPlugin (${req.getKind() || "plugin"}): node ${args.join(" ")}`);
  const child = spawn(process.execPath, args, {
    cwd: analyzer ? programDir : req.getPwd() || programDir,
    env: pluginEnv(req.getEnvList()),
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  const send = (response: langproto.RunPluginResponse) => {
    if (!call.cancelled && call.writable) call.write(response);
  };
  child.stdout.on("data", (chunk: Buffer) =>
    send(new langproto.RunPluginResponse().setStdout(new Uint8Array(chunk))),
  );
  child.stderr.on("data", (chunk: Buffer) =>
    send(new langproto.RunPluginResponse().setStderr(new Uint8Array(chunk))),
  );
  call.on("cancelled", () => child.kill("SIGTERM"));
  child.once("error", (error) => {
    children.delete(child);
    call.destroy(
      Object.assign(new Error(`could not start ${command}: ${error.message}`), {
        code: grpc.status.UNKNOWN,
      }),
    );
  });
  child.once("close", (code, signal) => {
    children.delete(child);
    if (call.cancelled) return;
    send(new langproto.RunPluginResponse().setExitcode(code ?? (signal ? 1 : 0)));
    call.end();
  });
}

/** Plugin processes started by RunPlugin: killed when the engine stops this host. */
const children = new Set<ReturnType<typeof spawn>>();
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    for (const child of children) child.kill("SIGTERM");
    process.exit(0);
  });
}

function logBanner(engine: enginerpc.EngineClient | undefined, message = BANNER): void {
  if (engine === undefined) {
    process.stderr.write(`${message}\n`);
    return;
  }
  const request = new engineproto.LogRequest();
  request.setSeverity(engineproto.LogSeverity.WARNING);
  request.setMessage(message);
  engine.log(request, () => undefined);
}

async function main(): Promise<void> {
  // The engine passes its address (host:port) as the last argument, after any flags.
  const engineAddress = process.argv
    .slice(2)
    .filter((arg) => /^[\w.[\]:-]+:\d+$/.test(arg))
    .pop();
  const engine =
    engineAddress === undefined
      ? undefined
      : new enginerpc.EngineClient(engineAddress, grpc.credentials.createInsecure());
  let announced = false;
  const announce = () => {
    if (!announced) {
      announced = true;
      logBanner(engine);
    }
  };
  const service: grpc.UntypedServiceImplementation = {
    getPluginInfo: unary(() => new plugproto.PluginInfo().setVersion(SDK_VERSION)),
    getRequiredPlugins: unary(() => new langproto.GetRequiredPluginsResponse()),
    getRequiredPackages: unary(() => new langproto.GetRequiredPackagesResponse()),
    getProgramDependencies: unary(() => new langproto.GetProgramDependenciesResponse()),
    about: unary(() =>
      new langproto.AboutResponse().setExecutable(process.execPath).setVersion(process.version),
    ),
    installDependencies: (call: grpc.ServerWritableStream<unknown, unknown>) => call.end(),
    cancel: unary(() => new Empty()),
    run: unary((req: langproto.RunRequest) => {
      announce();
      return run(req, engineAddress);
    }),
    runPlugin: (
      call: grpc.ServerWritableStream<langproto.RunPluginRequest, langproto.RunPluginResponse>,
    ) =>
      runPlugin(call, (what) => {
        announce();
        // Loud too: which process the stand-in started for the engine, so a run shows its path.
        logBanner(engine, `TESTBED STAND-IN pulumi-language-nodejs ${what}`);
      }),
  };
  await servePlugin(langrpc.LanguageRuntimeService, service);
}

main().catch((error: unknown) => {
  process.stderr.write(`testbed language host: ${String(error)}\n`);
  process.exit(1);
});
