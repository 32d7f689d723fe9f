/**
 * Routing between services, not only at the edge (ADR 0012), with the real parts and no cluster:
 * a REAL Envoy fed by a real routing controller on real etcd, and the example shop's three real
 * services (baseline, and forks that differ by image config only) calling each other THROUGH that
 * Envoy, as they do in a cluster where their Service names resolve to the gateway.
 *
 * What stands in for cluster DNS: the names the services call resolve to the Envoy on loopback.
 * `frontend` calls `http://localhost:<gateway>` and `checkout` calls `http://127.0.0.1:<gateway>`;
 * the controller's baseline gives `checkout` the host `localhost` and `payments` the host
 * `127.0.0.1` (in a cluster, `BaselineRouting` gives them `checkout.<ns>.svc.cluster.local` etc.,
 * see test/unit/baseline-routing.test.ts). The services carry only W3C baggage, through
 * OpenTelemetry's propagators; no service knows a routing key.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { defaultTextMapSetter, propagation, ROOT_CONTEXT, type Context } from "@opentelemetry/api";
import { W3CBaggagePropagator } from "@opentelemetry/core";
import test from "ava";
import { shopServiceEntry, type ShopAnswer, type ShopServiceName } from "../../../examples/shop";
import { startEtcd } from "../../../runtime/lib/etcd-server";
import { freePort } from "../../../runtime/lib/ports";
import { RoutingController } from "../../../runtime/routing/controller";
import { ShardStore } from "../../../runtime/routing/shard-store";
import { http1Get, startTestEnvoy } from "../../helpers/envoy";

const START_TIMEOUT_MS = 60_000;
const baggagePropagator = new W3CBaggagePropagator();

interface Service {
  readonly address: string;
  readonly child: ChildProcess;
}

/** One shop service on a free loopback port, running until the test ends. */
async function startShopService(
  t: import("ava").ExecutionContext,
  name: ShopServiceName,
  env: Record<string, string>,
): Promise<Service> {
  const child = spawn(process.execPath, ["--import", "tsx", shopServiceEntry(name)], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, HOST: "127.0.0.1", PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name} did not listen within ${START_TIMEOUT_MS} ms:\n${stderr}`)),
      START_TIMEOUT_MS,
    );
    createInterface({ input: child.stdout }).on("line", (line) => {
      try {
        const entry = JSON.parse(line) as { msg?: string; port?: number };
        if (entry.msg === "listening" && typeof entry.port === "number") {
          clearTimeout(timer);
          resolve(entry.port);
        }
      } catch {
        // Not a log line.
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code}:\n${stderr}`));
    });
  });
  return { address: `127.0.0.1:${port}`, child };
}

/** `service@version` of every hop, outermost first, and the baggage the last hop received. */
function chain(answer: ShopAnswer): { hops: string[]; lastBaggage: string | null } {
  const hops: string[] = [];
  let hop: ShopAnswer | undefined = answer;
  let lastBaggage: string | null = null;
  while (hop) {
    hops.push(`${hop.service}@${hop.version}`);
    lastBaggage = hop.baggage;
    hop = hop.downstream as ShopAnswer | undefined;
  }
  return { hops, lastBaggage };
}

/** Baggage headers an OpenTelemetry client sends for these members. */
function otelBaggage(members: Record<string, string>): Record<string, string> {
  const bag = propagation.createBaggage(
    Object.fromEntries(Object.entries(members).map(([k, value]) => [k, { value }])),
  );
  const ctx: Context = propagation.setBaggage(ROOT_CONTEXT, bag);
  const headers: Record<string, string> = {};
  baggagePropagator.inject(ctx, headers, defaultTextMapSetter);
  return headers;
}

test.serial(
  "a key routes every hop: baseline frontend → the shard's checkout fork → baseline payments (or the shard's fork), through a real Envoy",
  async (t) => {
    const etcd = await startEtcd();
    t.teardown(() => etcd.stop());
    const gatewayPort = await freePort();
    const viaGateway = {
      // What the names resolve to in a cluster: the gateway (ADR 0012).
      checkout: `http://localhost:${gatewayPort}`,
      payments: `http://127.0.0.1:${gatewayPort}`,
    };

    const payments = await startShopService(t, "payments", {});
    const paymentsBob = await startShopService(t, "payments", { SERVICE_VERSION: "bob-1" });
    const checkout = await startShopService(t, "checkout", { PAYMENTS_URL: viaGateway.payments });
    const checkoutAlice = await startShopService(t, "checkout", {
      SERVICE_VERSION: "alice-1",
      PAYMENTS_URL: viaGateway.payments,
    });
    const checkoutBob = await startShopService(t, "checkout", {
      SERVICE_VERSION: "bob-1",
      PAYMENTS_URL: viaGateway.payments,
    });
    const frontend = await startShopService(t, "frontend", { CHECKOUT_URL: viaGateway.checkout });

    const controller = new RoutingController({
      etcd: etcd.client,
      baseline: [
        { name: "frontend", destination: frontend.address },
        { name: "checkout", destination: checkout.address, hosts: ["localhost"] },
        { name: "payments", destination: payments.address, hosts: ["127.0.0.1"] },
      ],
      xdsPort: 0,
      ingressHost: "127.0.0.1",
      ingressPort: gatewayPort,
    });
    t.teardown(() => controller.close());
    const nacks: string[] = [];
    controller.server.events.on("nack", (n) => nacks.push(`${n.typeUrl}: ${n.error}`));
    const envoy = await startTestEnvoy(t, await controller.start());
    t.is(await envoy.ingressPort(), gatewayPort);

    /** A request into `frontend` through the gateway; the chain of hops that answered. */
    const shop = async (headers: Record<string, string> = {}) => {
      const response = await http1Get(gatewayPort, "frontend", headers);
      t.is(response.status, 200, response.body);
      return chain(JSON.parse(response.body) as ShopAnswer);
    };
    const allBaseline = ["frontend@baseline", "checkout@baseline", "payments@baseline"];
    t.deepEqual((await shop()).hops, allBaseline, "no shard yet: baseline");

    const store = new ShardStore(etcd.client);
    await store.create("alice", {
      routingKey: "alice-key",
      owner: "alice@example.com",
      forks: { checkout: checkoutAlice.address },
      ttlSeconds: 3600,
    });
    await store.create("bob", {
      routingKey: "bob-key",
      owner: "bob@example.com",
      forks: { checkout: checkoutBob.address, payments: paymentsBob.address },
      ttlSeconds: 3600,
    });
    const alice = otelBaggage({ "shardworks-routing-key": "alice-key", tenant: "acme" });
    const aliceChain = ["frontend@baseline", "checkout@alice-1", "payments@baseline"];
    // Pushed over ADS; Envoy applies it within the push latency.
    const deadline = Date.now() + 10_000;
    while ((await shop(alice)).hops[1] !== "checkout@alice-1" && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }

    const viaBaggage = await shop(alice);
    t.deepEqual(viaBaggage.hops, aliceChain, "baggage: the fork of the service behind frontend");
    t.is(
      viaBaggage.lastBaggage,
      "shardworks-routing-key=alice-key,tenant=acme",
      "the key (and every other member) still in the baggage at the last hop",
    );

    // The key in the header only: the gateway writes it into the baggage, so it survives hops.
    const viaHeader = await shop({ "x-shardworks-routing-key": "alice-key" });
    t.deepEqual(viaHeader.hops, aliceChain, "header: the fork too, past the first hop");
    t.is(viaHeader.lastBaggage, "shardworks-routing-key=alice-key");
    // Header and baggage disagree: the header wins on this hop and on every later one.
    const both = await shop({
      "x-shardworks-routing-key": "alice-key",
      ...otelBaggage({ "shardworks-routing-key": "bob-key" }),
    });
    t.deepEqual(both.hops, aliceChain, "an explicit header beats the baggage on every hop");

    t.deepEqual(
      (await shop(otelBaggage({ "shardworks-routing-key": "bob-key" }))).hops,
      ["frontend@baseline", "checkout@bob-1", "payments@bob-1"],
      "another shard's key: that shard's forks only, on every hop it forks",
    );
    t.deepEqual((await shop(otelBaggage({ tenant: "acme" }))).hops, allBaseline, "no key");
    t.deepEqual(
      (await shop(otelBaggage({ "shardworks-routing-key": "nobody-key" }))).hops,
      allBaseline,
      "a key no shard owns",
    );

    // Deregistered: the key routes to the baseline again, on every hop.
    await store.delete("alice");
    const back = Date.now() + 10_000;
    while ((await shop(alice)).hops[1] !== "checkout@baseline" && Date.now() < back) {
      await new Promise((r) => setTimeout(r, 100));
    }
    t.deepEqual((await shop(alice)).hops, allBaseline, "alice deregistered: baseline again");
    t.deepEqual(nacks, [], "Envoy accepted every configuration");
  },
);
