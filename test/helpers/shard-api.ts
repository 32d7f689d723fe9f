/**
 * A tiny scheduler-like API for tests: the real shard sub-app behind a real bearer-token auth
 * middleware (platform token, or a shard token checked against the stored hash), served on a
 * loopback port by `@hono/node-server`.
 */
import { serve, type ServerType } from "@hono/node-server";
import type { Etcd3 } from "etcd3";
import type { Hono } from "hono";
import type { AddressInfo } from "node:net";
import { digestsEqual, hashToken, shardOfToken } from "../../runtime/lib/auth";
import { createServiceApp, unauthenticated, type ApiEnv } from "../../runtime/lib/http";
import { shardUidOf } from "../../runtime/lib/model";
import { createShardsApi } from "../../runtime/routing/shards-api";
import { ShardStore } from "../../runtime/routing/shard-store";

export interface TestApi {
  readonly url: string;
  readonly platformToken: string;
  readonly app: Hono<ApiEnv>;
  close(): Promise<void>;
}

export async function startShardApi(
  etcd: Etcd3,
  platformToken = "platform-secret",
): Promise<TestApi> {
  const store = new ShardStore(etcd);
  const app = createServiceApp<ApiEnv>({ service: "test shard API", docs: "test/helpers" });
  app.use("*", async (c, next) => {
    const header = c.req.header("authorization") ?? "";
    const token = header.startsWith("Bearer ") ? header.slice(7) : "";
    if (token && digestsEqual(hashToken(token), hashToken(platformToken))) {
      c.set("principal", { kind: "platform" });
      return next();
    }
    const shard = shardOfToken(token);
    const stored = shard ? await store.get(shard) : undefined;
    if (shard && stored && digestsEqual(hashToken(token), stored.record.tokenHash)) {
      c.set("principal", {
        kind: "shard",
        shard,
        uid: shardUidOf(stored.record),
        createdAt: stored.record.createdAt,
      });
      return next();
    }
    throw unauthenticated("send 'Authorization: Bearer <token>'");
  });
  app.route("/v1/shards", createShardsApi(store));
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    platformToken,
    app,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
