/**
 * `npm start`: the whole runtime on this machine. A real etcd, a scheduler, two node agent
 * processes with the best driver available, a demo sandbox, then a routing controller with a demo
 * shard (one fork) and requests through a real xDS client with and without the routing key; then
 * it prints what to try next and runs until Ctrl-C, which stops everything it started (no orphans,
 * temp dirs removed).
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
import { DEMO_SERVICE, runRoutingDemo, startDemoBackends } from "../routing/demo";
import { ROUTING_KEY_BAGGAGE_MEMBER, ROUTING_KEY_HEADER } from "../routing/translate";
import { startScheduler, type RunningScheduler } from "../scheduler/server";
import { spawnNodeAgent, type SpawnedNodeAgent } from "../node-agent/spawn";
import { SchedulerClient } from "./client";
import { buildBusyboxImage } from "./demo-image";

async function main(): Promise<void> {
  const cleanups: (() => Promise<void>)[] = [];
  let stopping: Promise<void> | undefined;
  const stopAll = (): Promise<void> =>
    (stopping ??= (async () => {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    })());
  const onSignal = (): void => {
    console.log("\nstopping: routing controller, node agents, scheduler, etcd …");
    void stopAll().then(() => {
      console.log("stopped; nothing left running.");
      process.exit(0);
    });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    const work = await mkdtemp(join(tmpdir(), "shardworks-local-"));
    cleanups.push(() => rm(work, { recursive: true, force: true }));
    const etcd: EtcdServer = await startEtcd();
    cleanups.push(() => etcd.stop());
    console.log(`etcd        ${etcd.endpoint}`);

    const token =
      process.env.SHARDWORKS_PLATFORM_TOKEN ?? `local-${randomBytes(18).toString("base64url")}`;
    const scheduler: RunningScheduler = await startScheduler({
      etcdEndpoints: [etcd.endpoint],
      platformToken: token,
      port: Number(process.env.SHARDWORKS_LISTEN_PORT ?? 0),
    });
    cleanups.push(() => scheduler.close());
    console.log(`scheduler   ${scheduler.url}`);

    const agents: SpawnedNodeAgent[] = await Promise.all(
      ["node-a", "node-b"].map((name) =>
        spawnNodeAgent({
          name,
          etcdEndpoints: [etcd.endpoint],
          driver: process.env.SHARDWORKS_DRIVER ?? "auto",
          dataDir: join(work, name),
          cpuMillis: 2000,
          memoryMiB: 2048,
          // The scheduler calls the agents with the platform token (its default agent token).
          env: { SHARDWORKS_AGENT_TOKEN: token },
        }),
      ),
    );
    for (const agent of agents) {
      cleanups.push(() => agent.stop());
      console.log(
        `node agent  ${agent.name} at ${agent.address} (driver ${agent.driver}${agent.driver === "process" ? ": bubblewrap namespaces, NOT hardware-isolated" : ""})`,
      );
      for (const note of agent.notes) console.log(`            note: ${note}`);
    }

    const image = await buildBusyboxImage(join(work, "image"));
    const client = new SchedulerClient(scheduler.url, token);
    console.log(`\ndemo: running "echo hello from a sandbox" in ${image} …`);
    const demo = await client.createSandbox(
      {
        id: "demo",
        image,
        command: [
          "sh",
          "-c",
          "echo hello from a sandbox; echo 'my hostname:' $(cat /etc/hostname 2>/dev/null || echo none)",
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
    const controller = new RoutingController({
      etcd: etcd.client,
      baseline: [{ name: DEMO_SERVICE, destination: backends.baseline.address }],
      xdsPort: Number(process.env.SHARDWORKS_XDS_PORT ?? 0),
      // So `shardworks xds clients` (through the scheduler) sees this replica's clients.
      advertise: { name: "routing-local" },
    });
    cleanups.push(() => controller.close());
    const xdsAddress = `127.0.0.1:${await controller.start()}`;
    console.log(
      `\nrouting     xDS (ADS) at ${xdsAddress}; baseline "${DEMO_SERVICE}" → ${backends.baseline.address}`,
    );
    console.log(
      `demo: shard "demo" forks "${DEMO_SERVICE}" → ${backends.fork.address}; asking through a real gRPC xDS client …`,
    );
    const routing = await runRoutingDemo({
      apiUrl: scheduler.url,
      platformToken: token,
      xdsAddress,
      forkDestination: backends.fork.address,
      cleanup: false,
    });
    console.log(`routing: without a routing key        → ${routing.withoutKey}`);
    console.log(`routing: ${ROUTING_KEY_HEADER}: ${routing.routingKey} → ${routing.withHeader}`);
    console.log(
      `routing: baggage ${ROUTING_KEY_BAGGAGE_MEMBER}=${routing.routingKey} → ${routing.withBaggage}`,
    );

    const bin = resolve(__dirname, "bin.cjs");
    const probe = resolve(__dirname, "../routing/xds-probe.ts");
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
      `GRPC_XDS_BOOTSTRAP_CONFIG='${bootstrap}' node --import tsx ${probe} '${JSON.stringify({ target: `xds:///${DEMO_SERVICE}`, requests: [{ headers }] })}'`;
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

Routing (the shard "${routing.shard}" stays registered; its TTL is 10 minutes):
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
