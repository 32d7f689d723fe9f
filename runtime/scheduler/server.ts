/**
 * A scheduler process in one call: connects to etcd, serves the API and campaigns as placer.
 * `startScheduler` is what `main.ts`, `npm start` and the integration tests use.
 */
import type { AddressInfo } from "node:net";
import { serve, type ServerType } from "@hono/node-server";
import { Etcd3 } from "etcd3";
import type { Hono } from "hono";
import { z } from "zod";
import { DEFAULT_BODY_LIMIT_BYTES, type ApiEnv } from "../lib/http";
import { logger } from "../lib/logger";
import { Store } from "../lib/store";
import { xdsApp } from "./routes/xds";
import { ShardStore } from "../routing/shard-store";
import { createApi } from "./api";
import { createShardsApi } from "./routes/shards";
import { Autoscaler, type AutoscalerConfig, type NodeActuator } from "./autoscaler";
import { Placer } from "./placer";
import { PlacementStrategy } from "./placement";

/** Scheduler configuration (validated with zod). */
export const schedulerConfigSchema = z.strictObject({
  /** etcd client URLs. */
  etcdEndpoints: z.array(z.url()).min(1),
  /** The platform bearer token. */
  platformToken: z
    .string()
    .min(16, { message: "must be at least 16 characters (use a random secret)" }),
  host: z.string().default("127.0.0.1"),
  /** 0 = any free port. */
  port: z.number().int().min(0).max(65535).default(0),
  strategy: z
    .enum([PlacementStrategy.BinPack, PlacementStrategy.Spread])
    .default(PlacementStrategy.BinPack),
  electionTtlSeconds: z.number().int().min(1).default(5),
  bodyLimitBytes: z.number().int().positive().default(DEFAULT_BODY_LIMIT_BYTES),
  /** Run the placer in this process (every replica campaigns; one places). */
  placer: z.boolean().default(true),
  name: z.string().optional(),
  /** Bearer token the node agents' APIs expect (default: the platform token). */
  agentToken: z.string().min(16).optional(),
  /** The runtime version this process runs (the image tag), reported by `/healthz`. */
  version: z.string().min(1).optional(),
  /** Registries (host[:port]) shard tokens may pull from; unset = any public registry. */
  shardRegistries: z.array(z.string().min(1).max(260)).optional(),
  /** Whether shard tokens may ask for `network: true` (default false; `ApiOptions.shardNetwork`). */
  shardNetwork: z.boolean().default(false),
});
export type SchedulerConfig = z.input<typeof schedulerConfigSchema>;

/** A running scheduler. */
export interface RunningScheduler {
  /** Base URL of the API, e.g. `http://127.0.0.1:40123`. */
  readonly url: string;
  readonly placer: Placer | undefined;
  readonly store: Store;
  close(): Promise<void>;
}

/** Extras that are objects rather than configuration. */
export interface SchedulerExtras {
  /**
   * Run this autoscaler's actuator while this replica is the elected placer (so exactly one
   * replica scales); it is stopped when leadership is lost and on close.
   */
  autoscaler?: { actuator: NodeActuator; config: AutoscalerConfig };
}

/**
 * Start a scheduler: the sandbox and node API, the shard registry at `/v1/shards`, and `mounts`
 * (more sub-apps behind the same auth).
 */
export async function startScheduler(
  config: SchedulerConfig,
  mounts: readonly { path: string; app: Hono<ApiEnv> }[] = [],
  extras: SchedulerExtras = {},
): Promise<RunningScheduler> {
  const parsed = schedulerConfigSchema.parse(config);
  const client = new Etcd3({ hosts: parsed.etcdEndpoints });
  const store = new Store(client);
  const app = createApi({
    store,
    platformToken: parsed.platformToken,
    bodyLimitBytes: parsed.bodyLimitBytes,
    ...(parsed.agentToken === undefined ? {} : { agentToken: parsed.agentToken }),
    ...(parsed.version === undefined ? {} : { version: parsed.version }),
    ...(parsed.shardRegistries === undefined ? {} : { shardRegistries: parsed.shardRegistries }),
    shardNetwork: parsed.shardNetwork,
    mounts: [
      { path: "/v1/shards", app: createShardsApi(new ShardStore(client)) },
      { path: "/v1/xds", app: xdsApp(store) },
      ...mounts,
    ],
  });
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: parsed.host, port: parsed.port }, () =>
      resolve(s),
    );
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${parsed.host}:${port}`;
  const placer = parsed.placer
    ? new Placer(store, {
        strategy: parsed.strategy,
        electionTtlSeconds: parsed.electionTtlSeconds,
        ...(parsed.name ? { name: parsed.name } : {}),
      })
    : undefined;
  placer?.events.on("error", (error) => logger.debug({ err: error }, "placer error"));
  let autoscaler: Autoscaler | undefined;
  const scaling = extras.autoscaler;
  if (placer && scaling) {
    placer.events.on("elected", () => {
      autoscaler = new Autoscaler(store, scaling.actuator, { ...scaling.config });
      autoscaler.start();
    });
    placer.events.on("deposed", () => {
      void autoscaler?.close();
      autoscaler = undefined;
    });
  }
  placer?.start();
  logger.info({ url }, "scheduler listening");
  return {
    url,
    placer,
    store,
    async close() {
      await autoscaler?.close();
      await placer?.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        if ("closeAllConnections" in server) server.closeAllConnections();
      });
      client.close();
    },
  };
}
