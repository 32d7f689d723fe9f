import test from "ava";
import { startEtcd } from "../../../runtime/lib/etcd-server";
import { RoutingController } from "../../../runtime/routing/controller";
import { DEMO_SERVICE, runRoutingDemo, startDemoBackends } from "../../../runtime/routing/demo";
import { ShardStore } from "../../../runtime/routing/shard-store";
import { startScheduler } from "../../../runtime/scheduler/server";

test("the npm-start demo: no key → baseline, header or baggage → the fork", async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const platformToken = "demo-platform-token-0123456789";
  const scheduler = await startScheduler({
    etcdEndpoints: [etcd.endpoint],
    platformToken,
    port: 0,
    placer: false,
  });
  t.teardown(() => scheduler.close());
  const backends = await startDemoBackends();
  t.teardown(() => backends.close());
  const controller = new RoutingController({
    etcd: etcd.client,
    baseline: [{ name: DEMO_SERVICE, destination: backends.baseline.address }],
    xdsPort: 0,
  });
  t.teardown(() => controller.close());
  const port = await controller.start();
  const result = await runRoutingDemo({
    apiUrl: scheduler.url,
    platformToken,
    xdsAddress: `127.0.0.1:${port}`,
    forkDestination: backends.fork.address,
  });
  t.deepEqual(result, {
    shard: "demo",
    routingKey: "demo-key",
    withoutKey: "baseline",
    withHeader: "fork",
    withBaggage: "fork",
  });
  t.is(await new ShardStore(etcd.client).get("demo"), undefined, "the demo cleans up its shard");
});
