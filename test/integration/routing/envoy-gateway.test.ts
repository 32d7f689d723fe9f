/**
 * A REAL Envoy (1.40, the pinned binary), bootstrapped with `envoyBootstrap()` and fed over ADS by
 * a real routing controller on real etcd, routes real HTTP/1.1, h2c, gRPC and WebSocket traffic
 * by routing key (header or W3C baggage) to forks, and everything else to the baseline.
 */
import test from "ava";
import { keys } from "../../../runtime/lib/keys";
import { sandboxRecordSchema } from "../../../contract/model";
import { freePort } from "../../../runtime/lib/ports";
import { startEtcd } from "../../../runtime/lib/etcd-server";
import { RoutingController } from "../../../runtime/routing/controller";
import { ShardStore } from "../../../runtime/routing/shard-store";
import { DEFAULT_ROUTE_BUCKETS, routeBucket } from "../../../runtime/routing/translate";
import { whoClient } from "../../../runtime/routing/who";
import { eventually, startBackend } from "../../helpers/grpc-backends";
import {
  h2cGet,
  http1Get,
  startH2cBackend,
  startHttpBackend,
  startTestEnvoy,
  webSocketHello,
} from "../../helpers/envoy";

const KEY = { "x-shardworks-routing-key": "alice-key" };

test.serial(
  "Envoy routes HTTP/1.1, h2c, gRPC and WebSocket by routing key (header, baggage) to forks, else to the baseline",
  async (t) => {
    const etcd = await startEtcd();
    t.teardown(() => etcd.stop());
    const backends = {
      api: await startHttpBackend("api-baseline"),
      apiFork: await startHttpBackend("api-fork"),
      web: await startHttpBackend("web-baseline"),
      webFork: await startHttpBackend("web-fork"),
      h2: await startH2cBackend("h2-baseline"),
      h2Fork: await startH2cBackend("h2-fork"),
      sandbox: await startHttpBackend("sandbox"),
    };
    const grpcBaseline = await startBackend("grpc-baseline");
    const grpcFork = await startBackend("grpc-fork");
    t.teardown(async () => {
      await Promise.all([
        ...Object.values(backends).map((b) => b.close()),
        grpcBaseline.close(),
        grpcFork.close(),
      ]);
    });
    const ingressPort = await freePort();
    const controller = new RoutingController({
      etcd: etcd.client,
      baseline: [
        { name: "api", destination: backends.api.address },
        { name: "web", destination: backends.web.address, protocol: "http1" },
        { name: "h2", destination: backends.h2.address, protocol: "http2" },
        { name: "who", destination: grpcBaseline.address, protocol: "grpc" },
      ],
      xdsPort: 0,
      ingressHost: "127.0.0.1",
      ingressPort,
    });
    t.teardown(() => controller.close());
    const nacks: string[] = [];
    controller.server.events.on("nack", (n) => nacks.push(`${n.typeUrl}: ${n.error}`));
    const envoy = await startTestEnvoy(t, await controller.start());
    t.is(await envoy.ingressPort(), ingressPort, "the ingress listener from LDS is bound");

    const get = (host: string, headers: Record<string, string | string[]> = {}) =>
      http1Get(ingressPort, host, headers).then((r) => `${r.status} ${r.body}`);
    t.is(await get("api"), "200 api-baseline", "no shard: baseline");
    t.is(await get("api", KEY), "200 api-baseline", "a key no shard owns: baseline");

    const store = new ShardStore(etcd.client);
    await store.create("alice", {
      routingKey: "alice-key",
      owner: "alice@example.com",
      forks: {
        api: backends.apiFork.address,
        // A DNS name: its own LOGICAL_DNS cluster (IP forks share one ORIGINAL_DST cluster).
        web: `localhost:${backends.webFork.port}`,
        h2: backends.h2Fork.address,
        who: grpcFork.address,
      },
      ttlSeconds: 3600,
    });
    await store.create("bob", {
      routingKey: "bob-key",
      owner: "bob@example.com",
      forks: { web: backends.web.address },
      ttlSeconds: 3600,
    });
    t.is(await eventually(() => get("api", KEY), "200 api-fork"), "200 api-fork", "header → fork");
    t.is(await get("api"), "200 api-baseline", "no key → baseline");
    t.is(await get("api.shardworks.local:8080"), "200 api-baseline", "FQDN with a port → baseline");
    t.is(await get("api", { baggage: "shardworks-routing-key=alice-key" }), "200 api-fork");
    t.is(
      await get("api", { baggage: "userid=42;p=1, shardworks-routing-key = alice-key;prop, t=x" }),
      "200 api-fork",
      "a baggage member inside a longer list → fork",
    );
    t.is(
      await get("api", { baggage: ["a=1", "shardworks-routing-key=alice-key"] }),
      "200 api-fork",
      "two baggage headers are one list",
    );
    t.is(await get("api", { baggage: "shardworks-routing-key=%61lice-key" }), "200 api-fork");
    t.is(
      await get("api", {
        baggage: "shardworks-routing-key=bob-key,shardworks-routing-key=alice-key",
      }),
      "200 api-fork",
      "of duplicate members the last wins (as @opentelemetry/core)",
    );
    t.is(await get("api", { baggage: "shardworks-routing-key=alice-key2" }), "200 api-baseline");
    t.is(
      await get("api", { baggage: "other=shardworks-routing-key=alice-key" }),
      "200 api-baseline",
    );
    t.is(
      await get("api", {
        "x-shardworks-routing-key": "bob-key",
        baggage: "shardworks-routing-key=alice-key",
      }),
      "200 api-baseline",
      "an explicit header wins over baggage (bob forks no api)",
    );
    t.is(
      await get("api", { "x-shardworks-upstream": backends.apiFork.address }),
      "200 api-baseline",
      "a client cannot pick an upstream with the ORIGINAL_DST header",
    );
    t.is(
      await get("api", { ...KEY, "x-shardworks-upstream": backends.web.address }),
      "200 api-fork",
      "… nor redirect a fork",
    );
    t.is(await get("web", KEY), "200 web-fork", "a fork at a DNS name");
    t.is(await get("web", { "x-shardworks-routing-key": "bob-key" }), "200 web-baseline");
    t.is((await http1Get(ingressPort, "unknown")).status, 404, "an unknown host: 404");

    // HTTP/2 downstream (h2c prior knowledge) to an HTTP/1.1 service, and to an HTTP/2 service.
    const h2 = (authority: string, headers: Record<string, string> = {}) =>
      h2cGet(ingressPort, authority, headers).then((r) => `${r.status} ${r.body}`);
    t.is(await h2("api"), "200 api-baseline");
    t.is(await h2("api", KEY), "200 api-fork");
    t.is(await h2("h2"), "200 h2-baseline h2.0", "an http2 service gets HTTP/2 upstream");
    t.is(await h2("h2", KEY), "200 h2-fork h2.0");
    t.is(await h2("h2", { baggage: "shardworks-routing-key=alice-key" }), "200 h2-fork h2.0");
    t.is(await get("h2"), "200 h2-baseline h2.0", "HTTP/1.1 in, HTTP/2 out");

    // gRPC through the gateway: the channel names the service as its authority.
    const grpc = whoClient(`127.0.0.1:${ingressPort}`, { "grpc.default_authority": "who" });
    t.teardown(() => grpc.close());
    t.is(await grpc.who(), "grpc-baseline", "gRPC without a key → baseline");
    t.is(await grpc.who(KEY), "grpc-fork", "gRPC with the header → fork");
    t.is(await grpc.who({ baggage: "shardworks-routing-key=alice-key" }), "grpc-fork");

    // WebSocket upgrades (HTTP/1.1) to the baseline and the fork.
    t.deepEqual(await webSocketHello(ingressPort, "api"), { hello: "api-baseline", echo: "ping" });
    t.deepEqual(await webSocketHello(ingressPort, "api", KEY), { hello: "api-fork", echo: "ping" });
    t.deepEqual(
      await webSocketHello(ingressPort, "api", { baggage: "shardworks-routing-key=alice-key" }),
      { hello: "api-fork", echo: "ping" },
    );

    // A running sandbox's exposed port at <id>.sandbox.<domain>.
    const at = new Date().toISOString();
    const sandbox = sandboxRecordSchema.parse({
      id: "sb1",
      spec: { image: "oci:/x", command: ["serve"], ports: [8080] },
      status: { phase: "running", endpoints: { "8080": backends.sandbox.address }, updatedAt: at },
      createdAt: at,
    });
    await etcd.client.put(keys.sandbox("sb1")).value(JSON.stringify(sandbox));
    t.is(await eventually(() => get("sb1.sandbox.shardworks.local"), "200 sandbox"), "200 sandbox");
    t.is(await get("8080.sb1.sandbox.shardworks.local"), "200 sandbox");
    t.is(
      await get("SB1.sandbox.shardworks.local:8080", KEY),
      "200 sandbox",
      "a sandbox host, whatever the key and the case: the sandbox scope (ADR 0016)",
    );
    // The scope is the gateway's to choose, whatever a client sends in its header.
    const aliceScope = `b${routeBucket("alice-key", DEFAULT_ROUTE_BUCKETS)}`;
    t.is(await get("api", { "x-shardworks-route-scope": aliceScope }), "200 api-baseline");
    t.is(await get("api", { ...KEY, "x-shardworks-route-scope": "base" }), "200 api-fork");
    t.is(await get("api", { "x-shardworks-route-scope": "sandbox" }), "200 api-baseline");

    // The shard goes: its routes go.
    await store.delete("alice");
    t.is(await eventually(() => get("api", KEY), "200 api-baseline"), "200 api-baseline");
    t.is(await grpc.who(KEY), "grpc-baseline");

    t.deepEqual(nacks, [], "Envoy accepted every response");
    const stats = await envoy.admin("/stats?filter=control_plane.connected_state");
    t.regex(stats, /control_plane\.connected_state: 1/);
  },
);
