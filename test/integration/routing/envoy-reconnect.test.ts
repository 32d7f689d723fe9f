/**
 * After a controller outage, the real Envoy keeps routing on its last good configuration, and
 * converges on the current one within 2 s of the controller answering again (the bootstrap caps
 * the ADS retry backoff at 0.5 s).
 */
import test from "ava";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "../../../runtime/lib/ports";
import { startEtcd } from "../../../runtime/lib/etcd-server";
import { RoutingController } from "../../../runtime/routing/controller";
import { ShardStore } from "../../../runtime/routing/shard-store";
import { eventually } from "../../helpers/grpc-backends";
import { http1Get, startHttpBackend, startTestEnvoy } from "../../helpers/envoy";

const OUTAGE_MS = 5000;

test.serial("Envoy converges within 2 s after a 5 s controller outage ends", async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const baseline = await startHttpBackend("baseline");
  const alice = await startHttpBackend("alice");
  const bob = await startHttpBackend("bob");
  t.teardown(() => Promise.all([baseline, alice, bob].map((b) => b.close())));
  const ingressPort = await freePort();
  const options = {
    etcd: etcd.client,
    baseline: [{ name: "api", destination: baseline.address }],
    xdsPort: await freePort(),
    ingressHost: "127.0.0.1",
    ingressPort,
  };
  let controller = new RoutingController(options);
  t.teardown(() => controller.close());
  await startTestEnvoy(t, await controller.start());
  const store = new ShardStore(etcd.client);
  const shard = (name: string, address: string) =>
    store.create(name, {
      routingKey: `${name}-key`,
      owner: "o@example.com",
      forks: { api: address },
      ttlSeconds: 3600,
    });
  const get = (key: string) =>
    http1Get(ingressPort, "api", { "x-shardworks-routing-key": key }).then((r) => r.body);
  await shard("alice", alice.address);
  t.is(await eventually(() => get("alice-key"), "alice"), "alice");

  await controller.close();
  await shard("bob", bob.address); // changed while the controller is down
  await sleep(OUTAGE_MS);
  t.is(await get("alice-key"), "alice", "during the outage: the last good configuration");
  t.is(await get("bob-key"), "baseline");

  controller = new RoutingController(options);
  await controller.start();
  const back = performance.now();
  t.is(await eventually(() => get("bob-key"), "bob", 10_000), "bob");
  const converged = performance.now() - back;
  t.log(`converged ${Math.round(converged)} ms after the controller answered again`);
  t.true(converged <= 2000, `converged after ${Math.round(converged)} ms`);
});
