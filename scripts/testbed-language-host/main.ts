/**
 * The policy-pack language host of the testbed (`tools.policyBinDir`/`pulumi-language-nodejs`, first
 * on PATH only for runs with a policy pack). The 3.248 engine starts a Node.js policy pack only
 * through the `nodejs` language host's `RunPlugin`; the real host served here
 * (`github.com/pulumi/pulumi/sdk/v3` v3.68.0, the newest whose tree has it) answers
 * "not supported", and no served version between v3.68 and the host's move to a module of its own
 * has it. So this host:
 *
 * - implements `RunPlugin` itself: `node <@pulumi/pulumi>/cmd/run-policy-pack <engine> <pack dir>`
 *   in the pack's directory, as the real host does for an analyzer, streaming the pack's stdout (its
 *   port) and stderr back to the engine, killing it when the engine cancels the call;
 * - forwards EVERY other call (Run, GetRequiredPackages, About, InstallDependencies, …) unchanged to
 *   the real `pulumi-language-nodejs` (`$SHARDWORKS_REAL_LANGUAGE_HOST`), which it starts with its
 *   own arguments. The program of a policy run is thus still run by the real host.
 *
 * Not done, unlike a real host with RunPlugin: its policy proxy (which asks the engine for the
 * stack's config and passes it to the pack as PULUMI_CONFIG, PULUMI_NODEJS_STACK, …; our pack reads
 * no stack config) and `nodeargs` for the pack.
 */
import { servePlugin } from "../testbed-plugin";
import * as grpc from "@grpc/grpc-js";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { join } from "node:path";
import * as enginerpc from "@pulumi/pulumi/proto/engine_grpc_pb";
import * as engineproto from "@pulumi/pulumi/proto/engine_pb";
import * as langrpc from "@pulumi/pulumi/proto/language_grpc_pb";
import * as langproto from "@pulumi/pulumi/proto/language_pb";

/** The engine's plugin kind for a policy pack (`apitype.AnalyzerPlugin`). */
const ANALYZER_KIND = "analyzer";

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

function logBanner(engine: enginerpc.EngineClient | undefined, message: string): void {
  if (engine === undefined) {
    process.stderr.write(`${message}\n`);
    return;
  }
  const request = new engineproto.LogRequest();
  request.setSeverity(engineproto.LogSeverity.WARNING);
  request.setMessage(message);
  engine.log(request, () => undefined);
}

/**
 * Start the real language host with our own arguments (the engine's address among them) and
 * resolve with its port, the first line it prints. Its stderr (logs) goes to ours.
 */
async function startRealHost(): Promise<string> {
  const binary = process.env.SHARDWORKS_REAL_LANGUAGE_HOST;
  if (binary === undefined || binary === "") {
    throw new Error("SHARDWORKS_REAL_LANGUAGE_HOST is not set; run `npm run tools`");
  }
  // Same process group: the engine ends a plugin by killing its group, so the real host goes too.
  const child = spawn(binary, process.argv.slice(2), { stdio: ["ignore", "pipe", "inherit"] });
  children.add(child);
  child.once("exit", () => children.delete(child));
  const lines = createInterface({ input: child.stdout });
  return new Promise<string>((resolve, reject) => {
    child.once("error", (error) =>
      reject(new Error(`could not start ${binary}: ${error.message}`)),
    );
    child.once("exit", (code) => reject(new Error(`${binary} exited (${code}) before its port`)));
    lines.once("line", (line) => resolve(`127.0.0.1:${line.trim()}`));
  });
}

type Definition = grpc.MethodDefinition<unknown, unknown>;

/** A handler that sends the call on to the real host and its answer (or stream) back. */
function forward(client: grpc.Client, method: Definition): grpc.UntypedHandleCall {
  const serialize = method.requestSerialize;
  const deserialize = method.responseDeserialize;
  if (method.requestStream) {
    throw new Error(`${method.path}: client-streaming calls are not forwarded`);
  }
  if (!method.responseStream) {
    const unaryCall: grpc.handleUnaryCall<unknown, unknown> = (call, callback) => {
      client.makeUnaryRequest(
        method.path,
        serialize,
        deserialize,
        call.request,
        call.metadata,
        callback,
      );
    };
    return unaryCall;
  }
  const streamCall: grpc.handleServerStreamingCall<unknown, unknown> = (call) => {
    const upstream = client.makeServerStreamRequest(
      method.path,
      serialize,
      deserialize,
      call.request,
      call.metadata,
    );
    call.on("cancelled", () => upstream.cancel());
    upstream.on("data", (message: unknown) => call.write(message));
    upstream.on("error", (error: grpc.ServiceError) => call.destroy(error));
    upstream.on("end", () => call.end());
  };
  return streamCall;
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
  const real = new grpc.Client(await startRealHost(), grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": 400 * 1024 * 1024,
  });
  const service: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(
    langrpc.LanguageRuntimeService as unknown as Record<string, Definition>,
  )) {
    if (name === "runPlugin") continue;
    service[name] = forward(real, method);
  }
  service.runPlugin = (
    call: grpc.ServerWritableStream<langproto.RunPluginRequest, langproto.RunPluginResponse>,
  ) =>
    // Loud: which process the stand-in started for the engine, so a run shows its path.
    runPlugin(call, (what) => logBanner(engine, `TESTBED STAND-IN pulumi-language-nodejs ${what}`));
  await servePlugin(langrpc.LanguageRuntimeService, service);
}

main().catch((error: unknown) => {
  process.stderr.write(`testbed policy language host: ${String(error)}\n`);
  for (const child of children) child.kill("SIGTERM");
  process.exit(1);
});
