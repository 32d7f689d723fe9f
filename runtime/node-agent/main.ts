/**
 * `tsx runtime/node-agent/main.ts --name node-a --etcd http://127.0.0.1:2379 …` (or
 * `runtime/main.ts node-agent`): one node agent process. Flags fall back to the `SHARDWORKS_*`
 * environment variables the RuntimeDeployment sets. SIGTERM/SIGINT stop it cleanly.
 */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command, Option } from "commander";
import { z } from "zod";
import { formatZodIssues } from "../lib/errors";
import { logger } from "../lib/logger";
import { closeOnSignals } from "../lib/shutdown";
import {
  driverChoiceSchema,
  labelKeyProblem,
  labelValueProblem,
  nodeName,
} from "../../contract/model";
import { Env, REGISTRY_HOST_PATTERN } from "../../contract";
import { NodeAgent } from "./agent";
import { bestAvailableDriver, createDriver } from "./drivers";

const optionsSchema = z.strictObject({
  name: nodeName,
  etcd: z
    .string()
    .min(1)
    .transform((s) => s.split(",")),
  driver: driverChoiceSchema.default("auto"),
  cpu: z.coerce.number().int().positive().default(4000),
  memory: z.coerce.number().int().positive().default(4096),
  leaseTtl: z.coerce.number().int().min(1).default(10),
  warmIdle: z.coerce.number().int().min(1).default(600),
  warmImages: z.coerce.number().int().min(0).max(1024).default(8),
  dataDir: z.string().optional(),
  host: z.string().default("127.0.0.1"),
  port: z.coerce.number().int().min(0).max(65535).default(0),
  label: z
    .array(
      z.string().superRefine((label, ctx) => {
        const at = label.indexOf("=");
        const problem =
          at < 0
            ? 'must be "key=value"'
            : (labelKeyProblem(label.slice(0, at)) ?? labelValueProblem(label.slice(at + 1)));
        if (problem !== undefined) {
          ctx.addIssue({ code: "custom", message: `${JSON.stringify(label)}: ${problem}` });
        }
      }),
    )
    .default([]),
});

async function main(argv: readonly string[]): Promise<void> {
  const program = new Command("shardworks-node-agent")
    .addOption(new Option("--name <name>", "node name").env(Env.nodeName))
    .addOption(
      new Option("--etcd <urls>", "etcd client URLs, comma-separated").env(Env.etcdEndpoints),
    )
    .addOption(new Option("--driver <driver>", "firecracker|qemu|process|auto").env(Env.driver))
    .addOption(new Option("--cpu <millis>", "CPU capacity in millicores").env(Env.nodeCpu))
    .addOption(new Option("--memory <mib>", "memory capacity in MiB").env(Env.nodeMemory))
    .addOption(new Option("--lease-ttl <seconds>", "node lease TTL").env(Env.leaseTtl))
    .addOption(new Option("--data-dir <dir>", "work dirs and logs").env(Env.dataDir))
    .addOption(
      new Option(
        "--warm-idle <seconds>",
        "release an image's warm starts after this long without a run (default 600)",
      ).env(Env.warmIdleSeconds),
    )
    .addOption(
      new Option(
        "--warm-images <count>",
        "keep warm starts of at most this many images, the most recently run (default 8)",
      ).env(Env.warmMaxImages),
    )
    .addOption(new Option("--host <host>", "address of the agent API").env(Env.listenHost))
    .addOption(new Option("--port <port>", "port of the agent API (0 = free)").env(Env.listenPort))
    .option("--label <key=value...>", "node labels (Kubernetes label keys and values)")
    .parse([...argv]);
  const parsed = optionsSchema.safeParse(
    Object.fromEntries(Object.entries(program.opts()).filter(([, v]) => v !== undefined)),
  );
  if (!parsed.success) {
    // Name the flag as typed: `--data-dir`, `--label[0]` (not `--.dataDir`).
    for (const line of formatZodIssues(parsed.error)) {
      const flag = line.replace(/^[A-Za-z]+/, (name) =>
        name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`),
      );
      console.error(`error: --${flag}`);
    }
    process.exit(2);
  }
  const o = parsed.data;
  const listEnv = (name: string): string[] =>
    (process.env[name] ?? "")
      .split(",")
      .map((h) => h.trim())
      .filter(Boolean);
  const trustedHosts = listEnv(Env.registryTrustedHosts);
  const insecureRegistries = listEnv(Env.registryInsecure);
  for (const registry of insecureRegistries) {
    if (!REGISTRY_HOST_PATTERN.test(registry)) {
      console.error(
        `error: ${Env.registryInsecure}: ${JSON.stringify(registry)} is not a registry "host[:port]"; list them without a scheme, comma-separated, e.g. "10.100.0.1:5055,registry.lan"`,
      );
      process.exit(2);
    }
  }
  const driverOptions = {
    imageStore: {
      ...(trustedHosts.length > 0 ? { trustedHosts } : {}),
      ...(insecureRegistries.length > 0 ? { insecureRegistries } : {}),
    },
  };
  const driver =
    o.driver === "auto"
      ? (await bestAvailableDriver(driverOptions)).driver
      : createDriver(o.driver, driverOptions);
  const agent = new NodeAgent({
    name: o.name,
    etcdEndpoints: o.etcd,
    driver,
    capacity: { cpuMillis: o.cpu, memoryMiB: o.memory },
    dataDir: o.dataDir ?? join(tmpdir(), `shardworks-node-${o.name}`),
    leaseTtlSeconds: o.leaseTtl,
    warmIdleSeconds: o.warmIdle,
    warmMaxImages: o.warmImages,
    // The scheduler's token for this agent's API (logs, migration); without one the API is open
    // and must be fenced by the network (NetworkPolicy), which the agent then says in its log.
    ...(process.env[Env.agentToken] ? { apiToken: process.env[Env.agentToken] } : {}),
    host: o.host,
    port: o.port,
    labels: Object.fromEntries(
      o.label.map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    ),
  });
  agent.events.on("error", (error) => logger.debug({ err: error }, "node agent error"));
  if (!process.env[Env.agentToken]) {
    logger.warn(`${Env.agentToken} is not set: the agent API (logs, migration) is unauthenticated`);
  }
  await agent.start();
  // One line on stdout that parents (tests, the local actuator) wait for.
  console.log(
    JSON.stringify({
      ready: true,
      name: agent.name,
      address: agent.address,
      driver: driver.name,
      notes: agent.capabilities?.notes ?? [],
    }),
  );
  closeOnSignals("node agent", () => agent.close());
}

/** Run a node agent from command-line arguments (`process.argv` form); exits on error. */
export function nodeAgentMain(argv: readonly string[]): Promise<void> {
  return main(argv).catch((error: unknown) => {
    console.error(`node agent failed: ${(error as Error).message}`);
    process.exit(1);
  });
}

if (require.main === module) void nodeAgentMain(process.argv);
