import * as grpc from "@grpc/grpc-js";
import test from "ava";
import { service as healthService } from "grpc-health-check";
import { startEtcd } from "../../../runtime/lib/etcd-server";
import { keys } from "../../../runtime/lib/keys";
import { RoutingController } from "../../../runtime/routing/controller";
import { ShardStore } from "../../../runtime/routing/shard-store";
import { TypeUrl } from "../../../runtime/routing/xds";

const baseline = [
  { name: "api", destination: "127.0.0.1:5000" },
  { name: "web", destination: "127.0.0.1:5001" },
];

async function settled(controller: RoutingController, shards: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const routes = controller.snapshot()?.resources(TypeUrl.Cluster);
    if (routes && [...routes.keys()].filter((n) => n.startsWith("shard/")).length === shards)
      return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`controller did not reach ${shards} fork clusters`);
}

test("two controllers watching the same etcd serve the same versions", async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const store = new ShardStore(etcd.client);
  for (const name of ["alice", "bob", "carol"]) {
    await store.create(name, {
      routingKey: `${name}-key`,
      owner: name,
      forks: { api: "127.0.0.1:6000", ...(name === "bob" ? { web: "10.1.2.3:80" } : {}) },
      ttlSeconds: 3600,
    });
  }
  const a = new RoutingController({ etcd: etcd.client, baseline, xdsPort: 0 });
  t.teardown(() => a.close());
  await a.start();
  await store.create("dave", {
    routingKey: "dave-key",
    owner: "d",
    forks: { web: "127.0.0.1:1" },
    ttlSeconds: 60,
  });
  // b starts after the last change, so it builds its state in one load, a in load + watch.
  const b = new RoutingController({
    etcd: etcd.client,
    baseline: [...baseline].reverse(),
    xdsPort: 0,
  });
  t.teardown(() => b.close());
  await b.start();
  await settled(a, 5);
  await settled(b, 5);
  for (const type of Object.values(TypeUrl)) {
    t.is(a.snapshot()!.version(type), b.snapshot()!.version(type), type);
  }
  t.true(a.snapshot()!.consistent());
});

test("expired shards get no routes; the reaper deletes expired shards only; a bad record is skipped, not fatal", async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const store = new ShardStore(etcd.client);
  const input = { owner: "o", forks: { api: "127.0.0.1:6000" } };
  const past = new Date(Date.now() - 10_000);
  await store.create("old", { ...input, routingKey: "old-key", ttlSeconds: 1 }, past);
  await store.create("fresh", { ...input, routingKey: "fresh-key", ttlSeconds: 3600 });
  await etcd.client.put(keys.shard("broken")).value("{not json");
  const controller = new RoutingController({
    etcd: etcd.client,
    baseline,
    xdsPort: 0,
    reapIntervalMs: 3_600_000,
  });
  t.teardown(() => controller.close());
  const reaped: number[] = [];
  controller.events.on("reaped", (e) => reaped.push(e.count));
  await controller.start();
  // Expired shards have no routes even before the reaper runs.
  await settled(controller, 1);
  t.deepEqual(
    [...controller.snapshot()!.resources(TypeUrl.Cluster).keys()].filter((n) =>
      n.startsWith("shard/"),
    ),
    ["shard/fresh/api"],
  );
  await controller.reapOnce();
  t.deepEqual(reaped, [1]);
  t.is(await store.get("old"), undefined);
  t.truthy(await store.get("fresh"));
  t.is(await etcd.client.get(keys.routingKey("old-key")).string(), null, "routing key released");
  await settled(controller, 1);
  t.deepEqual(
    [...controller.snapshot()!.resources(TypeUrl.Cluster).keys()].filter((n) =>
      n.startsWith("shard/"),
    ),
    ["shard/fresh/api"],
  );
});

test("the ADS port answers gRPC health checks (the Kubernetes readiness probe)", async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const controller = new RoutingController({ etcd: etcd.client, baseline, xdsPort: 0 });
  t.teardown(() => controller.close());
  const port = await controller.start();
  const Health = grpc.makeGenericClientConstructor(healthService, "Health");
  const client = new Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as {
    Check(req: { service: string }, cb: (e: Error | null, r?: { status: string }) => void): void;
    close(): void;
  };
  t.teardown(() => client.close());
  const status = await new Promise<string>((resolve, reject) =>
    client.Check({ service: "" }, (e, r) => (e ? reject(e) : resolve(String(r?.status)))),
  );
  t.is(status, "SERVING");
});

test("routes vanish at expiry without the reaper: the controller rebuilds at the next expiresAt", async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const store = new ShardStore(etcd.client);
  const controller = new RoutingController({
    etcd: etcd.client,
    baseline,
    xdsPort: 0,
    reapIntervalMs: 3_600_000, // the reaper does not run during this test
  });
  t.teardown(() => controller.close());
  await controller.start();
  await store.create("brief", {
    routingKey: "brief-key",
    owner: "o",
    forks: { api: "127.0.0.1:6000" },
    ttlSeconds: 1,
  });
  await settled(controller, 1);
  await settled(controller, 0);
  t.truthy(await store.get("brief"), "still in etcd: translation dropped it at expiry");
  t.false(controller.snapshot("gateway")!.resources(TypeUrl.Cluster).has("shard/brief/api"));
});

test("the gateway node and gRPC nodes get their own snapshots", async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const controller = new RoutingController({ etcd: etcd.client, baseline, xdsPort: 0 });
  t.teardown(() => controller.close());
  await controller.start();
  t.deepEqual([...controller.snapshot("gateway")!.resources(TypeUrl.Listener).keys()], ["ingress"]);
  t.deepEqual([...controller.snapshot("grpc")!.resources(TypeUrl.Listener).keys()], ["api", "web"]);
  t.is(controller.cache.nodeKey({ id: "shardworks-gateway" }), "gateway");
  t.is(controller.cache.nodeKey({ id: "some-grpc-client" }), "grpc");
});
