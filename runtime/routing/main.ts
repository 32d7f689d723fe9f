/**
 * `tsx runtime/routing/main.ts --etcd http://127.0.0.1:2379 --baseline api=10.0.0.5:8080`: the
 * routing controller process (ADS server + reapers). Every option has an environment variable, as
 * the RuntimeDeployment sets them (`SHARDWORKS_ETCD_ENDPOINTS`, `SHARDWORKS_LISTEN_HOST`,
 * `SHARDWORKS_LISTEN_PORT`, `SHARDWORKS_BASELINE_SERVICES`, `SHARDWORKS_ROUTER_NAME`,
 * `SHARDWORKS_ADVERTISE_ADDRESS`, `SHARDWORKS_RUNTIME_VERSION`); also
 * `runtime/main.ts routing-controller`.
 */
import { Command, Option } from "commander";
import { isIP, isIPv6 } from "node:net";
import { hostname } from "node:os";
import { Etcd3 } from "etcd3";
import { z } from "zod";
import { formatZodIssues } from "../lib/errors";
import { logger } from "../lib/logger";
import { baselineServiceSchema, nodeName } from "../../contract/model";
import { createAccessReaper, type AccessReaper } from "../access/reaper";
import { loadKubeConfig } from "../access/kubeconfig";
import { RoutingController } from "./controller";
import { RESERVED_SERVICE_NAMES } from "./translate";
import { Env, Ports } from "../../contract";

/** Routing controller configuration (validated with zod). */
export const routingConfigSchema = z
  .strictObject({
    etcdEndpoints: z.array(z.url()).min(1),
    /** Baseline services: `name=host:port` pairs, or a JSON list of `{ name, destination }`. */
    baseline: z.array(baselineServiceSchema).superRefine((list, ctx) => {
      const seen = new Set<string>();
      list.forEach((s, i) => {
        if (RESERVED_SERVICE_NAMES.includes(s.name)) {
          ctx.addIssue({
            code: "custom",
            path: [i, "name"],
            message: `"${s.name}" is reserved (the gateway's listener); rename the service`,
          });
        }
        if (seen.has(s.name)) {
          ctx.addIssue({
            code: "custom",
            path: [i, "name"],
            message: `service "${s.name}" is listed twice`,
          });
        }
        seen.add(s.name);
      });
      // Envoy refuses a route table in which two virtual hosts share a domain (and with it every
      // route of the gateway), so a host name may belong to one service only.
      const owners = new Map<string, string>(list.map((s) => [s.name, s.name]));
      list.forEach((s, i) => {
        (s.hosts ?? []).forEach((host, j) => {
          const owner = owners.get(host);
          if (owner !== undefined) {
            ctx.addIssue({
              code: "custom",
              path: [i, "hosts", j],
              message: `"${host}" is already a host of service "${owner}"; each host name routes to one service`,
            });
          }
          owners.set(host, s.name);
        });
      });
    }),
    xdsHost: z.string().min(1).default("0.0.0.0"),
    xdsPort: z.number().int().min(0).max(65535).default(18_000),
    ingressPort: z.number().int().min(1).max(65535).default(Ports.gatewayListener),
    /** The address Envoy's ingress listener binds (sent over LDS). */
    ingressHost: z
      .string()
      .refine((a) => isIP(a) !== 0, { message: 'must be an IP address, e.g. "0.0.0.0"' })
      .default("0.0.0.0"),
    domain: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, {
        message: 'must be a DNS domain, e.g. "shardworks.local"',
      })
      .default("shardworks.local"),
    reapIntervalMs: z.number().int().min(100).default(1000),
    /** Registered as `routers/<name>` so the scheduler can ask this replica's CSDS. */
    name: nodeName.optional(),
    /**
     * Where the scheduler reaches this replica's ADS/CSDS: `host`, `host:port` or `[v6]:port`, or a
     * bare IPv6 address (a pod IP); the port defaults to the listen port. Default 127.0.0.1.
     */
    advertise: z
      .string()
      .refine((a) => parseAdvertise(a, 1) !== undefined, {
        message: 'must be a host, host:port or [IPv6]:port, e.g. "10.0.3.7" or "[fd00::5]:18000"',
      })
      .optional(),
    /** The runtime version this replica runs (the image tag). */
    version: z.string().min(1).optional(),
  })
  .superRefine((config, ctx) => {
    // The gateway sends every `….sandbox.<domain>` host to the sandboxes' scope (ADR 0016): a
    // baseline host there would never reach its service.
    const suffix = `.sandbox.${config.domain}`;
    config.baseline.forEach((s, i) => {
      (s.hosts ?? []).forEach((host, j) => {
        if (host.toLowerCase().endsWith(suffix)) {
          ctx.addIssue({
            code: "custom",
            path: ["baseline", i, "hosts", j],
            message: `"${host}" ends with "${suffix}", the sandboxes' host names; give the service another host`,
          });
        }
      });
    });
  });
export type RoutingConfig = z.input<typeof routingConfigSchema>;

/** A router name from the host name (made a valid name) and the pid. */
function defaultRouterName(): string {
  const host =
    hostname()
      .toLowerCase()
      .replace(/[^a-z0-9.-]+/g, "-")
      .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, "") || "routing";
  return `${host}-${process.pid}`;
}

/** `host`, `host:port`, `[v6]:port` or a bare IPv6 address as `host:port` (IPv6 bracketed). */
export function parseAdvertise(address: string, port: number): string | undefined {
  if (isIPv6(address)) return `[${address}]:${port}`;
  const bracketed = /^\[([0-9a-fA-F:.]+)\](?::([0-9]{1,5}))?$/.exec(address);
  if (bracketed) {
    return isIPv6(bracketed[1]!) ? `[${bracketed[1]}]:${bracketed[2] ?? port}` : undefined;
  }
  const plain = /^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(?::([0-9]{1,5}))?$/.exec(address);
  if (!plain) return undefined;
  return `${plain[1]}:${plain[3] ?? port}`;
}

/** Parse `--baseline`: a JSON list, or comma-separated `name=host:port`. */
export function parseBaseline(text: string): unknown {
  const trimmed = text.trim();
  if (trimmed === "") return [];
  if (trimmed.startsWith("[")) return JSON.parse(trimmed) as unknown;
  return trimmed.split(",").map((pair) => {
    const eq = pair.indexOf("=");
    return { name: pair.slice(0, eq).trim(), destination: pair.slice(eq + 1).trim() };
  });
}

/** Start a controller from a validated config; the caller closes it. */
export async function startRoutingController(
  config: RoutingConfig,
): Promise<{ controller: RoutingController; etcd: Etcd3; port: number }> {
  const parsed = routingConfigSchema.parse(config);
  const etcd = new Etcd3({ hosts: parsed.etcdEndpoints });
  const controller = new RoutingController({
    etcd,
    baseline: parsed.baseline,
    xdsHost: parsed.xdsHost,
    xdsPort: parsed.xdsPort,
    ingressPort: parsed.ingressPort,
    ingressHost: parsed.ingressHost,
    domain: parsed.domain,
    reapIntervalMs: parsed.reapIntervalMs,
    ...(parsed.name === undefined
      ? {}
      : {
          advertise: {
            name: parsed.name,
            ...(parsed.advertise === undefined
              ? {}
              : { address: parseAdvertise(parsed.advertise, parsed.xdsPort)! }),
            ...(parsed.version === undefined ? {} : { version: parsed.version }),
          },
        }),
  });
  try {
    const port = await controller.start();
    return { controller, etcd, port };
  } catch (error) {
    await controller.close().catch(() => undefined);
    etcd.close();
    throw error;
  }
}

async function main(argv: readonly string[]): Promise<void> {
  const program = new Command("shardworks-routing")
    .addOption(
      new Option("--etcd <urls>", "etcd client URLs, comma-separated")
        .env(Env.etcdEndpoints)
        .makeOptionMandatory(),
    )
    .addOption(
      new Option(
        "--baseline <services>",
        'baseline services: "api=10.0.0.5:8080,web=web.svc:80" or JSON',
      )
        .env(Env.baselineServices)
        .default(""),
    )
    .addOption(
      new Option("--host <host>", "ADS listen address").env(Env.listenHost).default("0.0.0.0"),
    )
    .addOption(
      new Option("--port <port>", "ADS port").env(Env.listenPort).default(String(Ports.xds)),
    )
    .addOption(
      new Option("--ingress-port <port>", "Envoy ingress listener port")
        .env(Env.ingressPort)
        .default(String(Ports.gatewayListener)),
    )
    .addOption(
      new Option("--ingress-host <address>", "address Envoy's ingress listener binds")
        .env(Env.ingressHost)
        .default("0.0.0.0"),
    )
    .addOption(
      new Option("--domain <domain>", "sandbox hosts are <id>.sandbox.<domain>")
        .env(Env.domain)
        .default("shardworks.local"),
    )
    .addOption(
      new Option("--name <name>", "this replica's name in etcd (routers/<name>)")
        .env(Env.routerName)
        // Unique per process: two local controllers must not hide each other's registration.
        .default(defaultRouterName()),
    )
    .addOption(
      new Option(
        "--advertise <address>",
        "where the scheduler reaches this replica's ADS/CSDS: host, host:port or [IPv6]:port (default 127.0.0.1; port: --port)",
      ).env(Env.advertiseAddress),
    )
    .addOption(
      new Option(
        "--kubeconfig <file>",
        "Kubernetes API for the access reaper (default: in-cluster when running in a pod)",
      ).env(Env.kubeconfig),
    )
    .parse([...argv]);
  const o = program.opts<{
    etcd: string;
    baseline: string;
    host: string;
    port: string;
    ingressPort: string;
    ingressHost: string;
    domain: string;
    name: string;
    advertise?: string;
    kubeconfig?: string;
  }>();
  let baseline: unknown;
  try {
    baseline = parseBaseline(o.baseline);
  } catch {
    throw new z.ZodError([
      { code: "custom", path: ["baseline"], message: "is not valid JSON", input: o.baseline },
    ]);
  }
  const { controller, etcd, port } = await startRoutingController({
    etcdEndpoints: o.etcd.split(","),
    baseline: baseline as RoutingConfig["baseline"],
    xdsHost: o.host,
    xdsPort: Number(o.port),
    ingressPort: Number(o.ingressPort),
    ingressHost: o.ingressHost,
    domain: o.domain,
    name: o.name,
    ...(o.advertise === undefined ? {} : { advertise: o.advertise }),
    ...(process.env[Env.runtimeVersion] ? { version: process.env[Env.runtimeVersion] } : {}),
  });
  // The access reaper deletes expired JIT grants through the Kubernetes API; it runs where this
  // process can reach one (in a pod, or with --kubeconfig), and says so when it cannot.
  let accessReaper: AccessReaper | undefined;
  if (o.kubeconfig !== undefined || process.env.KUBERNETES_SERVICE_HOST !== undefined) {
    accessReaper = createAccessReaper(loadKubeConfig(o.kubeconfig));
    accessReaper.start();
  } else {
    logger.info("access reaper off: no Kubernetes API (set --kubeconfig or run in a pod)");
  }
  let closing = false;
  const stop = (): void => {
    if (closing) return;
    closing = true;
    Promise.all([controller.close(), accessReaper?.close()]).then(
      () => {
        etcd.close();
        process.exit(0);
      },
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  console.log(JSON.stringify({ ready: true, xdsPort: port }));
}

/** Run the routing controller from command-line arguments (`process.argv` form); exits on error. */
export function routingMain(argv: readonly string[]): Promise<void> {
  return main(argv).catch((error: unknown) => {
    if (error instanceof z.ZodError) {
      for (const line of formatZodIssues(error)) console.error(`invalid option: ${line}`);
    } else {
      logger.error({ err: error }, "routing controller failed to start");
    }
    process.exit(1);
  });
}

if (require.main === module) void routingMain(process.argv);
