/**
 * `tsx runtime/scheduler/main.ts --etcd http://127.0.0.1:2379 --port 8080` (or `runtime/main.ts
 * scheduler`): one scheduler replica (API + placer candidate). Options fall back to the env vars
 * the RuntimeDeployment sets (`SHARDWORKS_ETCD_ENDPOINTS`, `SHARDWORKS_LISTEN_HOST`,
 * `SHARDWORKS_LISTEN_PORT`); the platform token comes from `SHARDWORKS_PLATFORM_TOKEN`, the
 * version `/healthz` reports from `SHARDWORKS_RUNTIME_VERSION`.
 */
import { Command, Option } from "commander";
import { z, ZodError } from "zod";
import { formatZodIssues } from "../lib/errors";
import { logger } from "../lib/logger";
import { closeOnSignals } from "../lib/shutdown";
import { startScheduler } from "./server";
import { Env, Ports } from "../../contract";

async function main(argv: readonly string[]): Promise<void> {
  const program = new Command("shardworks-scheduler")
    .addOption(
      new Option("--etcd <urls>", "etcd client URLs, comma-separated")
        .env(Env.etcdEndpoints)
        .makeOptionMandatory(),
    )
    .addOption(
      new Option("--host <host>", "listen address").env(Env.listenHost).default("127.0.0.1"),
    )
    .addOption(
      new Option("--port <port>", "listen port (0 = free)")
        .env(Env.listenPort)
        .default(String(Ports.schedulerApi)),
    )
    .addOption(new Option("--strategy <s>", "binpack|spread").env(Env.strategy).default("binpack"))
    .addOption(
      new Option("--election-ttl <seconds>", "placer election TTL")
        .env(Env.electionTtl)
        .default("5"),
    )
    .parse([...argv]);
  const o = program.opts<{
    etcd: string;
    host: string;
    port: string;
    strategy: string;
    electionTtl: string;
  }>();
  const registries = process.env[Env.shardRegistries];
  const scheduler = await startScheduler({
    etcdEndpoints: o.etcd.split(","),
    platformToken: process.env[Env.platformToken] ?? "",
    ...(process.env[Env.agentToken] ? { agentToken: process.env[Env.agentToken] } : {}),
    // The image's version, as the RuntimeDeployment sets it; /healthz reports it.
    ...(process.env[Env.runtimeVersion] ? { version: process.env[Env.runtimeVersion] } : {}),
    // Registries shard tokens may pull from, comma-separated host[:port]; unset = public ones.
    ...(registries ? { shardRegistries: registries.split(",").filter(Boolean) } : {}),
    // `allow` lets shard tokens ask for network: true (default `deny`).
    shardNetwork: shardNetworkEnv.parse(process.env[Env.shardNetwork] ?? "deny") === "allow",
    host: o.host,
    port: Number(o.port),
    strategy: o.strategy as "binpack",
    electionTtlSeconds: Number(o.electionTtl),
  });
  console.log(JSON.stringify({ ready: true, url: scheduler.url }));
  closeOnSignals("scheduler", () => scheduler.close());
}

/** `SHARDWORKS_SHARD_NETWORK`: whether shard tokens may ask for `network: true`. */
const shardNetworkEnv = z.enum(["allow", "deny"], {
  message: `${Env.shardNetwork} must be "allow" or "deny" (the default)`,
});

/** Run a scheduler replica from command-line arguments (`process.argv` form); exits on error. */
export function schedulerMain(argv: readonly string[]): Promise<void> {
  return main(argv).catch((error: unknown) => {
    if (error instanceof ZodError) {
      for (const line of formatZodIssues(error)) console.error(`error: ${line}`);
      console.error("(platformToken comes from SHARDWORKS_PLATFORM_TOKEN)");
    } else {
      logger.error({ err: error }, "scheduler failed");
    }
    process.exit(1);
  });
}

if (require.main === module) void schedulerMain(process.argv);
