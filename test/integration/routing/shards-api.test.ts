import test from "ava";
import { keys } from "../../../runtime/lib/keys";
import type { ShardView } from "../../../contract/api";
import { etcdFor, PLATFORM_TOKEN, schedulerFor } from "../../helpers/runtime";

/** Every field a shard API reply may carry (tests read the one the status implies). */
interface Reply {
  shard: ShardView;
  shards: ShardView[];
  token: string;
  error: { code: string; message: string };
}

async function setup(t: import("ava").ExecutionContext) {
  // The real scheduler API: its own auth middleware in front of the shards routes.
  const etcd = await etcdFor(t);
  const api = await schedulerFor(t, etcd, { placer: false });
  const call = async (method: string, path: string, token: string, body?: unknown) => {
    const response = await fetch(`${api.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      ...(body === undefined
        ? {}
        : { body: typeof body === "string" ? body : JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : {}) as Reply };
  };
  return { etcd, api, call, platform: PLATFORM_TOKEN };
}

const alice = {
  routingKey: "alice-key",
  owner: "alice@example.com",
  forks: [{ service: "api", destination: "10.0.0.7:8080" }],
  ttlSeconds: 3600,
};

test("PUT creates a shard once, returns its token once, stores only the token's hash", async (t) => {
  const { etcd, call, platform } = await setup(t);
  const created = await call("PUT", "/v1/shards/alice", platform, alice);
  t.is(created.status, 201);
  t.regex(created.body.token, /^alice\.[A-Za-z0-9_-]{43}$/);
  t.deepEqual(created.body.shard.forks, alice.forks);
  const stored = await etcd.client.get(keys.shard("alice")).string();
  t.false(stored?.includes(created.body.token) ?? true);
  t.false(stored?.includes(created.body.token.split(".")[1] ?? "-") ?? true);
  const again = await call("PUT", "/v1/shards/alice", platform, {
    ...alice,
    owner: "bob@example.com",
  });
  t.is(again.status, 200);
  t.false("token" in again.body);
  t.is(again.body.shard.owner, "bob@example.com");
  const got = await call("GET", "/v1/shards/alice", created.body.token);
  t.is(got.status, 200);
  t.false("tokenHash" in got.body.shard);
  t.is(got.body.shard.routingKey, "alice-key");
});

test("a fork's protocol is stored and shown; without one the fork inherits the baseline's", async (t) => {
  const { etcd, call, platform } = await setup(t);
  const forks = [
    { service: "api", destination: "10.0.0.7:8080", protocol: "grpc" },
    { service: "web", destination: "10.0.0.8:80" },
  ];
  const created = await call("PUT", "/v1/shards/alice", platform, { ...alice, forks });
  t.is(created.status, 201);
  t.deepEqual(created.body.shard.forks, forks);
  const stored = JSON.parse((await etcd.client.get(keys.shard("alice")).string()) ?? "{}") as {
    protocols?: Record<string, string>;
  };
  t.deepEqual(stored.protocols, { api: "grpc" });
  // An update without protocols drops them.
  const updated = await call("PUT", "/v1/shards/alice", platform, alice);
  t.deepEqual(updated.body.shard.forks, alice.forks);
  const after = JSON.parse((await etcd.client.get(keys.shard("alice")).string()) ?? "{}") as object;
  t.false("protocols" in after);
});

test("a shard token manages only its own shard; the platform token manages all", async (t) => {
  const { call, platform } = await setup(t);
  const a = (await call("PUT", "/v1/shards/alice", platform, alice)).body.token;
  const b = (await call("PUT", "/v1/shards/bob", platform, { ...alice, routingKey: "bob-key" }))
    .body.token;
  t.is((await call("GET", "/v1/shards/bob", a)).status, 403);
  t.is((await call("DELETE", "/v1/shards/bob", a)).status, 403);
  t.is((await call("PUT", "/v1/shards/bob", a, alice)).status, 403);
  t.is(
    (await call("PUT", "/v1/shards/carol", a, { ...alice, routingKey: "carol-key" })).status,
    403,
  );
  t.is((await call("GET", "/v1/shards/x", "alice.forged-secret")).status, 401);
  const listA = await call("GET", "/v1/shards", a);
  t.deepEqual(
    listA.body.shards.map((s) => s.name),
    ["alice"],
  );
  const listP = await call("GET", "/v1/shards", platform);
  t.deepEqual(
    listP.body.shards.map((s) => s.name),
    ["alice", "bob"],
  );
  t.is((await call("DELETE", "/v1/shards/bob", b)).status, 204);
  t.is((await call("GET", "/v1/shards/bob", platform)).status, 404);
  t.is((await call("DELETE", "/v1/shards/alice", platform)).status, 204);
  t.is((await call("DELETE", "/v1/shards/alice", platform)).status, 404);
});

test("routing keys are unique across shards (409) and are released on delete or change", async (t) => {
  const { call, platform } = await setup(t);
  t.is((await call("PUT", "/v1/shards/alice", platform, alice)).status, 201);
  const clash = await call("PUT", "/v1/shards/bob", platform, alice);
  t.is(clash.status, 409);
  t.is(clash.body.error.code, "routing_key_taken");
  t.regex(clash.body.error.message, /alice/);
  t.is(
    (await call("PUT", "/v1/shards/alice", platform, { ...alice, routingKey: "alice-two" })).status,
    200,
  );
  t.is((await call("PUT", "/v1/shards/bob", platform, alice)).status, 201);
  const clash2 = await call("PUT", "/v1/shards/alice", platform, alice);
  t.is(clash2.status, 409);
  t.is((await call("DELETE", "/v1/shards/bob", platform)).status, 204);
  t.is((await call("PUT", "/v1/shards/alice", platform, alice)).status, 200);
});

test("bad input is refused with a 400 that names the field", async (t) => {
  const { call, platform } = await setup(t);
  const cases: [string, string, unknown, RegExp][] = [
    ["bad name", "/v1/shards/Alice_1", alice, /^name: /],
    [
      "duplicate fork",
      "/v1/shards/alice",
      { ...alice, forks: [alice.forks[0], { service: "api", destination: "10.0.0.8:80" }] },
      /forks\[1\]\.service: service "api" is already forked at forks\[0\]/,
    ],
    ["regex injection", "/v1/shards/alice", { ...alice, routingKey: "a.*|x" }, /routingKey: /],
    [
      "header injection",
      "/v1/shards/alice",
      { ...alice, routingKey: "abcd\r\nx-evil: 1" },
      /routingKey: /,
    ],
    [
      "baggage injection",
      "/v1/shards/alice",
      { ...alice, routingKey: "abcd,other=1" },
      /routingKey: /,
    ],
    [
      "destination",
      "/v1/shards/alice",
      { ...alice, forks: [{ service: "api", destination: "http://x:80/" }] },
      /forks\[0\]\.destination: must be "host:port"/,
    ],
    [
      "port",
      "/v1/shards/alice",
      { ...alice, forks: [{ service: "api", destination: "x:99999" }] },
      /port must be 1-65535/,
    ],
    [
      "protocol",
      "/v1/shards/alice",
      { ...alice, forks: [{ ...alice.forks[0], protocol: "http3" }] },
      /forks\[0\]\.protocol: must be "http1", "http2" or "grpc"/,
    ],
    ["ttl", "/v1/shards/alice", { ...alice, ttlSeconds: 0 }, /ttlSeconds: /],
    ["unknown field", "/v1/shards/alice", { ...alice, extra: 1 }, /extra/],
    ["not json", "/v1/shards/alice", "{", /JSON/],
  ];
  for (const [label, path, body, message] of cases) {
    const response = await call("PUT", path, platform, body);
    t.is(response.status, 400, label);
    t.regex(response.body.error.message, message, label);
    t.false(JSON.stringify(response.body).includes("    at "), `${label}: no stack trace`);
  }
  t.deepEqual((await call("GET", "/v1/shards", platform)).body.shards, []);
});

test("a shard token may point its forks only into its own namespace, and may not change the owner", async (t) => {
  const { call, platform } = await setup(t);
  const token = (await call("PUT", "/v1/shards/alice", platform, alice)).body.token;
  // No ttlSeconds: a shard token's PUT keeps its shard's expiry (it may not extend it).
  const { ttlSeconds: _ttl, ...rest } = alice;
  const put = (destination: string, owner = alice.owner) =>
    call("PUT", "/v1/shards/alice", token, {
      ...rest,
      owner,
      forks: [{ service: "api", destination }],
    });
  for (const destination of [
    "127.0.0.1:9901", // the gateway's admin interface
    "10.0.0.7:2379", // etcd
    "api.shard-bob.svc:8080", // another shard
    "api.shard-alice.svc.evil.com:80",
    "shard-alice.svc:80",
    "169.254.169.254:80",
  ]) {
    const refused = await put(destination);
    t.is(refused.status, 403, destination);
    t.regex(refused.body.error.message, /^forks\[0\]\.destination: /, destination);
  }
  t.regex(
    (await put("10.0.0.7:2379")).body.error.message,
    /only route to its own namespace, "<service>\.shard-alice\.svc\[\.cluster\.local\]:<port>"/,
  );
  t.is((await put("api.shard-alice.svc:8080")).status, 200);
  t.is((await put("web.shard-alice.svc.cluster.local:80")).status, 200);
  const owner = await put("api.shard-alice.svc:8080", "mallory@example.com");
  t.is(owner.status, 403);
  t.regex(owner.body.error.message, /^owner: a shard token cannot change the owner/);
  // Nor the routing key: a free key may be one another shard's clients send (or will).
  const key = await call("PUT", "/v1/shards/alice", token, {
    ...rest,
    routingKey: "unclaimed-key",
    forks: [{ service: "api", destination: "api.shard-alice.svc:8080" }],
  });
  t.is(key.status, 403);
  t.regex(key.body.error.message, /^routingKey: a shard token cannot change the routing key/);
  const changed = await call("PUT", "/v1/shards/alice", platform, {
    ...alice,
    owner: "bob@example.com",
  });
  t.is(changed.status, 200, "the platform token may change the owner");
});

test("a shard token may keep or shorten its shard's TTL, never extend it; the platform token may", async (t) => {
  const { call, platform } = await setup(t);
  const created = await call("PUT", "/v1/shards/alice", platform, alice);
  const token = created.body.token;
  const expiresAt = created.body.shard.expiresAt;
  // What a shard token may send: forks into its own namespace, no ttlSeconds.
  const { ttlSeconds: _ttl, ...rest } = alice;
  const own = { ...rest, forks: [{ service: "api", destination: "api.shard-alice.svc:8080" }] };
  const get = async () => (await call("GET", "/v1/shards/alice", token)).body.shard;
  for (const ttlSeconds of [3600, 7200, 7 * 86_400]) {
    const refused = await call("PUT", "/v1/shards/alice", token, { ...own, ttlSeconds });
    t.is(refused.status, 403, `ttlSeconds ${ttlSeconds}`);
    t.regex(
      refused.body.error.message,
      /^ttlSeconds: a shard token cannot extend its shard's expiry .*only the platform token can extend it/,
    );
    t.is((await get()).expiresAt, expiresAt, "a refused PUT changes nothing");
  }
  // Without ttlSeconds a shard token's PUT (here: another fork) keeps the expiry, not one day.
  const kept = await call("PUT", "/v1/shards/alice", token, own);
  t.is(kept.status, 200);
  t.is(kept.body.shard.expiresAt, expiresAt);
  t.is(kept.body.shard.ttlSeconds, 3600);
  t.deepEqual(kept.body.shard.forks, own.forks);
  // Shorter is allowed, and then the old TTL would be an extension.
  const before = Date.now();
  const shortened = await call("PUT", "/v1/shards/alice", token, { ...own, ttlSeconds: 600 });
  t.is(shortened.status, 200, JSON.stringify(shortened.body));
  const shortExpiry = Date.parse(shortened.body.shard.expiresAt);
  t.true(shortExpiry < Date.parse(expiresAt));
  t.true(shortExpiry >= before + 600_000 && shortExpiry <= Date.now() + 600_000);
  t.is(shortened.body.shard.ttlSeconds, 600);
  const longer = await call("PUT", "/v1/shards/alice", token, { ...own, ttlSeconds: 601 });
  t.is(longer.status, 403);
  // The platform token extends.
  const extended = await call("PUT", "/v1/shards/alice", platform, { ...alice, ttlSeconds: 7200 });
  t.is(extended.status, 200);
  t.true(Date.parse(extended.body.shard.expiresAt) > Date.parse(expiresAt));
  t.is(extended.body.shard.ttlSeconds, 7200);
});

test("no token may point a fork at a link-local or metadata address, in any spelling", async (t) => {
  const { call, platform } = await setup(t);
  const put = (destination: string) =>
    call("PUT", "/v1/shards/alice", platform, {
      ...alice,
      forks: [{ service: "api", destination }],
    });
  for (const destination of [
    "169.254.169.254:80",
    "169.254.0.1:8080",
    "metadata.google.internal:80",
  ]) {
    const refused = await put(destination);
    t.is(refused.status, 403, destination);
    t.regex(refused.body.error.message, /link-local\/metadata address/, destination);
  }
  for (const destination of ["2852039166:80", "0xa9.0xfe.0xa9.0xfe:80", "0251.0376.0251.0376:80"]) {
    const refused = await put(destination);
    t.is(refused.status, 400, destination);
    t.regex(refused.body.error.message, /non-canonical form; write it as 169\.254\.169\.254/);
  }
  t.is((await put("127.0.0.1:9000")).status, 201, "the platform token may set other addresses");
});
