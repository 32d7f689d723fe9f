/**
 * The `shardworks` CLI: `sandbox run|ls|get|logs|rm|migrate`, `node ls` and
 * `access grant|ls|revoke`, as tables or `--json`. `--api`/`SHARDWORKS_API` and
 * `--token`/`SHARDWORKS_TOKEN` say which scheduler and who we are; the `access` commands talk to
 * the Kubernetes API server of `--kubeconfig`/`KUBECONFIG` instead.
 */
import { Command, Option } from "commander";
import { DEFAULT_MAX_JIT_MS } from "../../contract";
import {
  Duration,
  checkGrantRequest,
  formatDuration,
  grantAccess,
  listGrants,
  loadKubeConfig,
  parseGrantDuration,
  revokeGrant,
  timeLeft,
} from "../access";
import { ApiError, type SchedulerClient } from "../../contract/client";
import { cliClient } from "./client";
import { grantRows, print, sandboxDetail, sandboxRows, xdsRows } from "./format";
import { table } from "./table";
import { collect, collectNumbers, parseKeyValues, wholeNumber } from "./options";
import { Env } from "../../contract";

interface GlobalOptions {
  api: string;
  token?: string;
  json?: boolean;
}

function clientOf(cmd: Command): { client: SchedulerClient; json: boolean } {
  const o = cmd.optsWithGlobals<GlobalOptions>();
  if (!o.token)
    throw new ApiError(
      0,
      "no_token",
      "no token: pass --token or set SHARDWORKS_TOKEN (npm start prints one)",
    );
  return { client: cliClient(o.api, o.token), json: o.json === true };
}

/** Build the program (exported for tests). */
export function buildProgram(): Command {
  const program = new Command("shardworks")
    .description("Run sandboxes on the Shardworks runtime")
    .addOption(
      new Option("--api <url>", "scheduler URL").env(Env.api).default("http://127.0.0.1:8080"),
    )
    .addOption(new Option("--token <token>", "platform or shard token").env(Env.token))
    .option("--json", "print JSON instead of tables")
    .showHelpAfterError();

  const sandbox = program.command("sandbox").description("run and manage sandboxes");
  sandbox
    .command("run")
    .description("run a command in a new sandbox")
    .argument("<image>", 'OCI image: "oci:/path/to/layout[:tag]" or "registry/repo:tag"')
    .argument("<command...>", "command and arguments (put them after --)")
    .option("--id <id>", "sandbox id (default: generated)")
    .option(
      "--cpu <millis>",
      "CPU in millicores",
      wholeNumber("a number of millicores", 1, 1_000_000, "--cpu 500"),
    )
    .option(
      "--memory <mib>",
      "memory in MiB",
      wholeNumber("a number of MiB", 1, 16_777_216, "--memory 256"),
    )
    .option("--driver <driver>", "firecracker|qemu|process")
    .option("--env <KEY=VALUE>", "environment variable (repeatable)", collect, [])
    .option(
      "--port <port>",
      "guest port to expose (repeatable)",
      collectNumbers(wholeNumber("a port", 1, 65535, "--port 8080")),
      [] as number[],
    )
    .option("--network", "allow network access from the sandbox")
    .option("--shard <shard>", "the shard the sandbox belongs to")
    .addOption(
      new Option("--wait <phase>", "wait until running|exited")
        .choices(["running", "exited"])
        .default("exited"),
    )
    .option("--no-wait", "return as soon as it is accepted")
    .option(
      "--timeout <seconds>",
      "how long to wait",
      wholeNumber("a number of seconds", 1, 3600, "--timeout 300"),
      120,
    )
    .action(async (image: string, command: string[], o: Record<string, unknown>, cmd: Command) => {
      const { client, json } = clientOf(cmd);
      const spec: Record<string, unknown> = { image, command };
      if (o.id) spec.id = o.id;
      if (o.cpu !== undefined || o.memory !== undefined)
        spec.resources = { cpuMillis: o.cpu ?? 250, memoryMiB: o.memory ?? 128 };
      if (o.driver) spec.driver = o.driver;
      if ((o.env as string[]).length > 0) spec.env = parseKeyValues(o.env as string[], "--env");
      if ((o.port as number[]).length > 0) spec.ports = o.port;
      if (o.network) spec.network = true;
      if (o.shard) spec.shard = o.shard;
      const wait = o.wait === false ? undefined : (o.wait as "running" | "exited");
      if (wait && !json) {
        process.stderr.write(
          `waiting up to ${String(o.timeout)} s for the sandbox to be ${wait}…\n`,
        );
      }
      const record = await client.createSandbox(spec, wait, o.timeout as number);
      print(json, record, () => sandboxDetail(record));
      const reached =
        wait === undefined ||
        record.status.phase === wait ||
        record.status.phase === "exited" ||
        record.status.phase === "failed";
      if (!reached) {
        // Not there in time (e.g. no node fits): say so and fail, as a script expects.
        const reason = record.status.reason === undefined ? "" : ` (${record.status.reason})`;
        console.error(
          `error: timed out after ${String(o.timeout)} s waiting for ${record.id} to be ${wait}; it is ${record.status.phase}${reason}. See it with \`shardworks sandbox get ${record.id}\`, remove it with \`shardworks sandbox rm ${record.id}\`, or wait longer with --timeout`,
        );
        process.exitCode = 1;
      }
      if (wait === "exited" && record.status.phase === "exited") {
        if (!json) {
          // Like `docker run`: the command's output, then its exit code as ours.
          console.log("");
          const stream = await client.logs(record.id, false);
          for await (const chunk of stream) process.stdout.write(chunk);
        }
        process.exitCode = record.status.exitCode ?? 0;
      }
      if (record.status.phase === "failed") process.exitCode = 1;
    });
  sandbox
    .command("ls")
    .description("list sandboxes")
    .action(async (_o: unknown, cmd: Command) => {
      const { client, json } = clientOf(cmd);
      const items = await client.listSandboxes();
      print(json, items, () => sandboxRows(items));
    });
  sandbox
    .command("get")
    .argument("<id>")
    .description("show one sandbox")
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { client, json } = clientOf(cmd);
      const record = await client.getSandbox(id);
      print(json, record, () => sandboxDetail(record));
    });
  sandbox
    .command("logs")
    .argument("<id>")
    .option("-f, --follow", "keep streaming until the sandbox ends")
    .description("print a sandbox's output")
    .action(async (id: string, o: { follow?: boolean }, cmd: Command) => {
      const { client } = clientOf(cmd);
      const stream = await client.logs(id, o.follow === true);
      try {
        for await (const chunk of stream) process.stdout.write(chunk);
      } catch (error) {
        // The connection dropped mid-stream (undici says only "aborted" or "terminated").
        throw new Error(
          `the log stream of ${id} was cut off (${(error as Error).message}): the scheduler or the sandbox's node went away; run the command again to read the log from the start`,
          { cause: error },
        );
      }
    });
  sandbox
    .command("rm")
    .argument("<ids...>")
    .description("delete sandboxes (stops them)")
    .action(async (ids: string[], _o: unknown, cmd: Command) => {
      const { client, json } = clientOf(cmd);
      // Every id is tried: one that fails does not stop the others, and each is reported.
      const deleted: string[] = [];
      const failed: { id: string; error: string }[] = [];
      for (const id of ids) {
        try {
          await client.deleteSandbox(id);
          deleted.push(id);
        } catch (error) {
          if (!(error instanceof ApiError) || error.status === 0) throw error;
          failed.push({ id, error: error.message });
        }
      }
      print(json, { deleted, failed }, () => deleted.map((id) => `deleted ${id}`).join("\n"));
      for (const f of failed) console.error(`error: ${inCliTerms(f.error)}`);
      if (failed.length > 0) process.exitCode = 1;
    });
  sandbox
    .command("migrate")
    .argument("<id>")
    .requiredOption("--to <node>", "target node")
    .description("live-migrate a running sandbox to another node")
    .action(async (id: string, o: { to: string }, cmd: Command) => {
      const { client, json } = clientOf(cmd);
      const record = await client.migrateSandbox(id, o.to);
      print(json, record, () => sandboxDetail(record));
    });

  program
    .command("node")
    .description("cluster nodes")
    .command("ls")
    .description("list nodes")
    .action(async (_o: unknown, cmd: Command) => {
      const { client, json } = clientOf(cmd);
      const nodes = await client.listNodes();
      print(json, nodes, () =>
        table(
          [
            "NAME",
            "DRIVER",
            "ISOLATION",
            "CPU (used/cap)",
            "MEMORY MiB (used/cap)",
            "SANDBOXES",
            "ADDRESS",
          ],
          nodes.map((n) => [
            n.name,
            n.driver,
            n.hardwareIsolated ? "hardware" : "namespaces only",
            `${n.allocated.cpuMillis}m/${n.capacity.cpuMillis}m`,
            `${n.allocated.memoryMiB}/${n.capacity.memoryMiB}`,
            String(n.allocated.sandboxes),
            n.address,
          ]),
        ),
      );
    });
  program
    .command("xds")
    .description("the routing controllers' xDS clients")
    .command("clients")
    .description(
      "which configuration each xDS client holds, per routing controller replica (CSDS): one row per client and resource type",
    )
    .option("--node-id <id>", "only clients with this node id (the gateway's: shardworks-gateway)")
    .action(async (o: { nodeId?: string }, cmd: Command) => {
      const { client, json } = clientOf(cmd);
      const report = await client.xdsClients(o.nodeId);
      print(json, report, () => xdsRows(report));
    });
  addAccessCommands(program);
  return program;
}

/** `access grant|ls|revoke`: JIT RBAC grants on the cluster of `--kubeconfig`. */
function addAccessCommands(program: Command): void {
  const access = program
    .command("access")
    .description("just-in-time RBAC grants that the access reaper deletes at expiry")
    .addOption(new Option("--kubeconfig <file>", "kubeconfig of the cluster").env("KUBECONFIG"));
  const configOf = (cmd: Command) => {
    const o = cmd.optsWithGlobals<GlobalOptions & { kubeconfig?: string }>();
    // KUBECONFIG may list several files; the client's default loader merges them like kubectl.
    const path = o.kubeconfig?.includes(":") ? undefined : o.kubeconfig;
    return { config: loadKubeConfig(path), json: o.json === true };
  };
  access
    .command("grant")
    .description("give a user a Shardworks role for a while, in one shard or cluster-wide")
    .requiredOption("--role <role>", "platform-admin | shard-owner | shard-viewer")
    .requiredOption("--to <user>", "user name, as the cluster authenticates it")
    .requiredOption("--for <duration>", "how long: 90m, 2h, 1h30m")
    .option("--shard <shard>", "limit the grant to namespace shard-<shard>")
    .addOption(
      new Option("--max <duration>", "the platform's longest grant")
        .env(Env.jitMax)
        .default(formatDuration(DEFAULT_MAX_JIT_MS)),
    )
    .action(async (o: Record<string, string | undefined>, cmd: Command) => {
      const max = Duration.safeParse(o.max);
      if (!max.success || max.data <= 0) {
        throw new Error(`--max: ${JSON.stringify(o.max)} is not a duration; write e.g. 8h`);
      }
      const request = {
        role: o.role ?? "",
        to: o.to ?? "",
        forMs: parseGrantDuration(o.for ?? "", max.data),
        ...(o.shard === undefined ? {} : { shard: o.shard }),
        maxMs: max.data,
      };
      checkGrantRequest(request); // flags first: a typo is reported even with no cluster at hand
      const { config, json } = configOf(cmd);
      const grant = await grantAccess(config, request);
      print(json, grant, () =>
        [
          `granted ${grant.role} to ${o.to} ${grant.namespace ? `in ${grant.namespace}` : "cluster-wide"} until ${grant.expiresAt} (${timeLeft(grant)})`,
          `revoke early: shardworks access revoke ${grant.name}${o.shard ? ` --shard ${o.shard}` : ""}`,
        ].join("\n"),
      );
    });
  access
    .command("ls")
    .description("list JIT grants with the time they have left")
    .action(async (_o: unknown, cmd: Command) => {
      const { config, json } = configOf(cmd);
      const grants = await listGrants(config);
      print(json, grants, () => (grants.length === 0 ? "no JIT grants" : grantRows(grants)));
    });
  access
    .command("revoke")
    .argument("<name>", "grant name, as access ls shows it")
    .option("--shard <shard>", "the shard of the grant, when the name is in several")
    .description("end a JIT grant now")
    .action(async (name: string, o: { shard?: string }, cmd: Command) => {
      const { config, json } = configOf(cmd);
      const grant = await revokeGrant(config, name, o.shard);
      print(
        json,
        { revoked: grant },
        () =>
          `revoked ${grant.name} (${grant.role} ${grant.namespace ? `in ${grant.namespace}` : "cluster-wide"})`,
      );
    });
}

/**
 * The API's hints name its own routes (it serves any client); at the CLI the commands that
 * do the same read better.
 */
const CLI_HINTS: readonly (readonly [RegExp, string])[] = [
  [/\bGET \/v1\/sandboxes\b/g, "`shardworks sandbox ls`"],
  [/\bGET \/v1\/nodes\b/g, "`shardworks node ls`"],
];
function inCliTerms(message: string): string {
  return CLI_HINTS.reduce((m, [api, cli]) => m.replace(api, cli), message);
}

/** Parse `argv` and run; errors become one line on stderr and exit code 1. */
export async function runCli(argv: readonly string[] = process.argv): Promise<void> {
  try {
    await buildProgram().parseAsync([...argv]);
  } catch (error) {
    console.error(`error: ${inCliTerms((error as Error).message)}`);
    process.exitCode = 1;
  }
}

if (require.main === module) void runCli();
