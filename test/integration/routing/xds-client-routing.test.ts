/**
 * A REAL `@grpc/grpc-js-xds` client, bootstrapped at our ADS server, routes REAL gRPC calls by
 * routing key. The client runs in a child process (it reads its bootstrap once per process).
 */
import test from "ava";
import { keys } from "../../../runtime/lib/keys";
import { sandboxRecordSchema } from "../../../contract/model";
import { freePort } from "../../../runtime/lib/ports";
import { startEtcd } from "../../../runtime/lib/etcd-server";
import { RoutingController } from "../../../runtime/routing/controller";
import { ShardStore } from "../../../runtime/routing/shard-store";
import { TypeUrl } from "../../../runtime/routing/xds";
import { eventually, startBackend, startXdsClientProcess } from "../../helpers/grpc-backends";

test.serial(
  "gRPC calls follow the routing key (header, baggage, delete, TTL), reach sandboxes, survive a controller restart",
  async (t) => {
    const etcd = await startEtcd();
    t.teardown(() => etcd.stop());
    const baseline = await startBackend("baseline");
    const fork = await startBackend("fork");
    const sandboxBackend = await startBackend("sandbox");
    t.teardown(() =>
      Promise.all([baseline.close(), fork.close(), sandboxBackend.close()]).then(() => undefined),
    );
    const xdsPort = await freePort();
    const options = {
      etcd: etcd.client,
      baseline: [{ name: "api", destination: baseline.address }],
      xdsPort,
      reapIntervalMs: 200,
    };
    let controller = new RoutingController(options);
    t.teardown(() => controller.close());
    await controller.start();

    const xds = startXdsClientProcess(`127.0.0.1:${xdsPort}`);
    t.teardown(() => xds.close());
    const client = { who: (headers?: Record<string, string>) => xds.who("xds:///api", headers) };
    const store = new ShardStore(etcd.client);
    const key = { "x-shardworks-routing-key": "alice-key" };
    const baggage = (value: string) => ({ baggage: value });

    t.is(await client.who(), "baseline", "no shard, no key → baseline");
    t.is(await client.who(key), "baseline", "a key no shard owns → baseline");

    await store.create("alice", {
      routingKey: "alice-key",
      owner: "alice@example.com",
      forks: { api: fork.address },
      ttlSeconds: 3600,
    });
    t.is(await eventually(() => client.who(key), "fork"), "fork", "header → fork");
    t.is(await client.who(), "baseline", "no key → baseline");
    t.is(await client.who(baggage("shardworks-routing-key=alice-key")), "fork", "baggage → fork");
    t.is(
      await client.who(baggage("userid=42;p=1, shardworks-routing-key = alice-key;prop, tenant=x")),
      "fork",
      "baggage member inside a longer list → fork",
    );
    t.is(await client.who(baggage("shardworks-routing-key=alice-key2")), "baseline");
    t.is(await client.who(baggage("other=shardworks-routing-key=alice-key")), "baseline");
    t.is(await client.who({ "x-shardworks-routing-key": "bob-key" }), "baseline");

    // A running sandbox's exposed port is reachable at <id>.sandbox.<domain>.
    const at = new Date().toISOString();
    const sandbox = sandboxRecordSchema.parse({
      id: "sb1",
      spec: { image: "oci:/x", command: ["serve"], ports: [50051] },
      status: { phase: "running", endpoints: { "50051": sandboxBackend.address }, updatedAt: at },
      createdAt: at,
    });
    await etcd.client.put(keys.sandbox("sb1")).value(JSON.stringify(sandbox));
    const sandboxTarget = "xds:///sb1.sandbox.shardworks.local";
    t.is(
      await eventually(() => xds.who(sandboxTarget), "sandbox"),
      "sandbox",
      "sandbox host → its port",
    );

    await store.delete("alice");
    t.is(
      await eventually(() => client.who(key), "baseline"),
      "baseline",
      "shard deleted → baseline",
    );

    // TTL: the reaper deletes the expired shard from etcd, and its routes vanish.
    await store.create("ttl", {
      routingKey: "ttl-key",
      owner: "o",
      forks: { api: fork.address },
      ttlSeconds: 2,
    });
    const ttlKey = { "x-shardworks-routing-key": "ttl-key" };
    t.is(await eventually(() => client.who(ttlKey), "fork"), "fork");
    t.is(
      await eventually(() => client.who(ttlKey), "baseline"),
      "baseline",
      "TTL passed → baseline",
    );
    // Routes go at expiry (translation drops expired shards); the reaper deletes the record on its
    // next tick.
    const reapedBy = Date.now() + 10_000;
    while ((await store.get("ttl")) && Date.now() < reapedBy) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    t.is(await store.get("ttl"), undefined, "the reaper deleted the shard from etcd");

    // Controller restart: the client keeps its config meanwhile, reconnects, and follows changes.
    const versionBefore = controller.snapshot()!.version(TypeUrl.Route);
    await controller.close();
    t.is(await client.who(), "baseline", "calls keep working while the controller is down");
    await store.create("carol", {
      routingKey: "carol-key",
      owner: "o",
      forks: { api: fork.address },
      ttlSeconds: 3600,
    });
    controller = new RoutingController(options);
    await controller.start();
    const carol = { "x-shardworks-routing-key": "carol-key" };
    t.is(
      await eventually(() => client.who(carol), "fork"),
      "fork",
      "reconnected and got the change",
    );
    t.not(controller.snapshot()!.version(TypeUrl.Route), versionBefore);
    const acked = await eventually(
      () =>
        Promise.resolve(
          [...controller.server.streamStates().values()].some(
            (s) =>
              s.get(TypeUrl.Route)?.ackedVersion === controller.snapshot()!.version(TypeUrl.Route),
          ),
        ),
      true,
    );
    t.true(acked, "the reconnected client ACKed the new controller's route version");
  },
);
