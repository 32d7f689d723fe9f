/**
 * The routing part of the `npm start` demo. Given a running scheduler API (with `/v1/shards`) and a
 * routing controller whose baseline includes `service`: create a shard forking `service` to
 * `forkDestination`, then send one request without the routing key, one with the header and one
 * with a baggage member, through a REAL `@grpc/grpc-js-xds` client, and report which backend
 * answered each.
 *
 * Use: `const backends = await startDemoBackends()`, start the controller with baseline
 * `{ name: "demo", destination: backends.baseline.address }`, then
 * `runRoutingDemo({ ..., forkDestination: backends.fork.address })`.
 */
import { spawn } from "node:child_process";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { ApiError, SchedulerClient } from "../../contract/client";
import type { ProbeInput } from "./xds-probe";
import { ROUTING_KEY_BAGGAGE_MEMBER, ROUTING_KEY_HEADER } from "./translate";
import { startWhoBackend, type WhoBackend } from "./who";

/** The service name the demo forks (configure the controller's baseline with it). */
export const DEMO_SERVICE = "demo";

/** Two real gRPC backends on loopback: the baseline and the fork of the demo service. */
export async function startDemoBackends(): Promise<{
  baseline: WhoBackend;
  fork: WhoBackend;
  close(): Promise<void>;
}> {
  const baseline = await startWhoBackend("baseline");
  const fork = await startWhoBackend("fork");
  return {
    baseline,
    fork,
    close: async () => {
      await Promise.all([baseline.close(), fork.close()]);
    },
  };
}

/** The HTTP service the demo forks through the local Envoy gateway (curl can reach it). */
export const DEMO_HTTP_SERVICE = "web";

/** A plain HTTP/1.1 backend on loopback answering every request with `<name>\n`. */
export interface DemoHttpBackend {
  readonly name: string;
  /** `127.0.0.1:<port>`. */
  readonly address: string;
  close(): Promise<void>;
}

/** Two HTTP backends on loopback: the baseline and the fork of {@link DEMO_HTTP_SERVICE}. */
export async function startDemoHttpBackends(): Promise<{
  baseline: DemoHttpBackend;
  fork: DemoHttpBackend;
  close(): Promise<void>;
}> {
  const start = async (name: string): Promise<DemoHttpBackend> => {
    const server = createServer((_req, res) => res.end(`${name}\n`));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return {
      name,
      address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    };
  };
  const baseline = await start(`${DEMO_HTTP_SERVICE} baseline`);
  const fork = await start(`${DEMO_HTTP_SERVICE} fork`);
  return {
    baseline,
    fork,
    close: async () => {
      await Promise.all([baseline.close(), fork.close()]);
    },
  };
}

/**
 * A GET through the gateway at `127.0.0.1:port` for `host`, as `curl -H 'host: …'` sends it;
 * resolves with the body (trimmed), retrying until `expect` answers or 20 s pass.
 */
export async function gatewayGet(
  port: number,
  host: string,
  headers: Record<string, string> = {},
  expect?: string,
): Promise<string> {
  const once = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const req = request(
        { host: "127.0.0.1", port, path: "/", headers: { ...headers, host }, agent: false },
        (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => (body += c));
          res.on("end", () => resolve(body.trim()));
        },
      );
      req.setTimeout(5000, () => req.destroy(new Error("the gateway did not answer in 5 s")));
      req.on("error", reject);
      req.end();
    });
  const deadline = Date.now() + 20_000;
  for (;;) {
    const body = await once();
    if (expect === undefined || body === expect || Date.now() > deadline) return body;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Options of {@link runRoutingDemo}. */
export interface RoutingDemoOptions {
  /** Scheduler API base URL. */
  apiUrl: string;
  platformToken: string;
  /** `host:port` of the routing controller's ADS server. */
  xdsAddress: string;
  /** Baseline service to fork; default {@link DEMO_SERVICE}. */
  service?: string;
  /** `host:port` of the fork's backend. */
  forkDestination: string;
  /** Default `demo`. */
  shardName?: string;
  /** Default `demo-key`. */
  routingKey?: string;
  /** Delete the shard at the end; default true. */
  cleanup?: boolean;
  /** The shard's TTL; default 600 s (a demo that keeps it, like `npm start`, wants longer). */
  ttlSeconds?: number;
  /** More forks of the same shard (e.g. the HTTP service behind the local gateway). */
  extraForks?: readonly { service: string; destination: string }[];
}

/** Which backend answered each request. */
export interface RoutingDemoResult {
  shard: string;
  routingKey: string;
  withoutKey: string;
  withHeader: string;
  withBaggage: string;
}

/** Run the demo; throws with a clear message when a step fails. */
export async function runRoutingDemo(options: RoutingDemoOptions): Promise<RoutingDemoResult> {
  const service = options.service ?? DEMO_SERVICE;
  const shard = options.shardName ?? "demo";
  const routingKey = options.routingKey ?? "demo-key";
  const api = new SchedulerClient(options.apiUrl, options.platformToken);
  try {
    await api.putShard(shard, {
      routingKey,
      owner: "demo",
      forks: [{ service, destination: options.forkDestination }, ...(options.extraForks ?? [])],
      ttlSeconds: options.ttlSeconds ?? 600,
    });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 0) throw error;
    const body = typeof error.body === "string" ? error.body : JSON.stringify(error.body);
    throw new Error(`creating shard ${shard} failed (HTTP ${error.status}): ${body}`, {
      cause: error,
    });
  }
  try {
    const answers = await probe(options.xdsAddress, {
      target: `xds:///${service}`,
      requests: [
        // The first request waits until the controller's push has reached the client.
        { headers: { [ROUTING_KEY_HEADER]: routingKey }, expect: "fork" },
        { headers: {} },
        { headers: { baggage: `user=demo, ${ROUTING_KEY_BAGGAGE_MEMBER}=${routingKey};src=cli` } },
      ],
    });
    const [withHeader, withoutKey, withBaggage] = answers.map((a) =>
      typeof a === "string" ? a : `error: ${a.error}`,
    );
    return {
      shard,
      routingKey,
      withoutKey: withoutKey ?? "",
      withHeader: withHeader ?? "",
      withBaggage: withBaggage ?? "",
    };
  } finally {
    // The shard may be gone already (404); only another failure, or an unreachable API, throws.
    if (options.cleanup ?? true) {
      await api.deleteShard(shard).catch((error: unknown) => {
        if (!(error instanceof ApiError && error.status === 404)) throw error;
      });
    }
  }
}

/** Run `xds-probe.ts` in its own process (a gRPC xDS client reads its bootstrap once per process). */
async function probe(
  xdsAddress: string,
  input: ProbeInput,
): Promise<(string | { error: string })[]> {
  const bootstrap = {
    xds_servers: [
      {
        server_uri: xdsAddress,
        channel_creds: [{ type: "insecure" }],
        server_features: ["xds_v3"],
      },
    ],
    node: { id: "shardworks-demo", locality: {} },
  };
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(__dirname, "xds-probe.ts"), JSON.stringify(input)],
    {
      env: { ...process.env, GRPC_XDS_BOOTSTRAP_CONFIG: JSON.stringify(bootstrap) },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  clearTimeout(timer);
  if (code !== 0) throw new Error(`the xDS client failed (exit ${code}): ${stderr.trim()}`);
  return (JSON.parse(stdout) as { answers: (string | { error: string })[] }).answers;
}
