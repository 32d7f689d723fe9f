import test from "ava";
import { hashToken, keys, newShardToken, startEtcd, type ShardRecord } from "../../../runtime/lib";
import { startScheduler } from "../../../runtime/scheduler";

const platformToken = "test-platform-token-0123456789";

async function setup(t: import("ava").ExecutionContext) {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const scheduler = await startScheduler({
    etcdEndpoints: [etcd.endpoint],
    platformToken,
    bodyLimitBytes: 64 * 1024,
  });
  t.teardown(() => scheduler.close());
  const call = (path: string, init: RequestInit & { token?: string } = {}) =>
    fetch(`${scheduler.url}${path}`, {
      ...init,
      headers: {
        authorization: `Bearer ${init.token ?? platformToken}`,
        "content-type": "application/json",
        ...(init.headers ?? {}),
      },
    });
  return { etcd, scheduler, call };
}

const good = { image: "oci:/tmp/busybox:latest", command: ["echo", "hi"] };

test("every kind of bad input is a clear 4xx and the service keeps serving", async (t) => {
  const { etcd, call } = await setup(t);
  const cases: {
    name: string;
    init: RequestInit & { token?: string };
    path?: string;
    status: number;
    mentions: RegExp;
  }[] = [
    {
      name: "malformed JSON",
      init: { method: "POST", body: '{"image": "x", ' },
      status: 400,
      mentions: /not valid JSON/,
    },
    {
      name: "unknown field",
      init: { method: "POST", body: JSON.stringify({ ...good, colour: "red" }) },
      status: 400,
      mentions: /colour/,
    },
    {
      name: "oversize body",
      init: {
        method: "POST",
        body: JSON.stringify({ ...good, env: { BIG: "x".repeat(100 * 1024) } }),
      },
      status: 413,
      mentions: /larger than 65536 bytes/,
    },
    {
      name: "bad image reference",
      init: { method: "POST", body: JSON.stringify({ ...good, image: "UPPER CASE::nope" }) },
      status: 400,
      mentions: /image: image "UPPER CASE::nope": .*use "oci:/,
    },
    {
      name: "negative resources",
      init: {
        method: "POST",
        body: JSON.stringify({ ...good, resources: { cpuMillis: -5, memoryMiB: 64 } }),
      },
      status: 400,
      mentions: /resources\.cpuMillis/,
    },
    {
      name: "missing command",
      init: { method: "POST", body: JSON.stringify({ image: good.image }) },
      status: 400,
      mentions: /command/,
    },
    {
      name: "wrong content type",
      init: {
        method: "POST",
        body: "a=b",
        headers: { "content-type": "application/x-www-form-urlencoded" },
      },
      status: 415,
      mentions: /application\/json/,
    },
    {
      name: "no token",
      init: { method: "GET", token: "" },
      path: "/v1/sandboxes",
      status: 401,
      mentions: /Bearer/,
    },
    {
      name: "wrong token",
      init: { method: "GET", token: "nope-not-it" },
      path: "/v1/sandboxes",
      status: 401,
      mentions: /not valid/,
    },
    {
      name: "bad wait",
      init: { method: "POST", body: JSON.stringify(good) },
      path: "/v1/sandboxes?wait=forever",
      status: 400,
      mentions: /query\.wait/,
    },
    {
      name: "bad id",
      init: { method: "GET" },
      path: "/v1/sandboxes/Not_A_Label",
      status: 400,
      mentions: /^id: /,
    },
    {
      name: "bad phase filter",
      init: { method: "GET" },
      path: "/v1/sandboxes?phase=sleeping",
      status: 400,
      mentions: /query\.phase: Invalid option: expected one of "pending"/,
    },
    {
      name: "unknown query parameter",
      init: { method: "GET" },
      path: "/v1/sandboxes?colour=red",
      status: 400,
      mentions: /colour/,
    },
    {
      name: "missing sandbox",
      init: { method: "GET" },
      path: "/v1/sandboxes/sb-missing",
      status: 404,
      mentions: /does not exist/,
    },
  ];
  for (const c of cases) {
    const response = await call(c.path ?? "/v1/sandboxes", c.init);
    const body = (await response.json()) as { error: { code: string; message: string } };
    t.is(response.status, c.status, `${c.name}: ${JSON.stringify(body)}`);
    t.regex(body.error.message, c.mentions, c.name);
    t.false(/\n\s+at /.test(body.error.message), `${c.name}: no stack trace`);
  }
  // Still serving: a good request works and nothing bad was stored.
  const created = await call("/v1/sandboxes", {
    method: "POST",
    body: JSON.stringify({ ...good, id: "ok-one" }),
  });
  t.is(created.status, 201);
  const list = (await (await call("/v1/sandboxes")).json()) as { items: { id: string }[] };
  t.deepEqual(
    list.items.map((i) => i.id),
    ["ok-one"],
  );
  t.is(
    (
      await call("/v1/sandboxes", {
        method: "POST",
        body: JSON.stringify({ ...good, id: "ok-one" }),
      })
    ).status,
    409,
  );
  t.truthy(etcd);
});

test("a shard token reaches only its own shard's sandboxes", async (t) => {
  const { etcd, call } = await setup(t);
  const tokens: Record<string, string> = {};
  for (const name of ["alice", "bob"]) {
    tokens[name] = newShardToken(name);
    const now = new Date().toISOString();
    const record: ShardRecord = {
      name,
      routingKey: `key-${name}`,
      owner: name,
      forks: {},
      ttlSeconds: 3600,
      expiresAt: new Date(Date.now() + 3600_000).toISOString(),
      tokenHash: hashToken(tokens[name]),
      createdAt: now,
    };
    await etcd.client.put(keys.shard(name)).value(JSON.stringify(record));
  }
  // A shard token may not name a path on the node (oci: layout): 403 naming the field.
  const layout = await call("/v1/sandboxes", {
    method: "POST",
    token: tokens.alice,
    body: JSON.stringify({ ...good, id: "alice-oci" }),
  });
  t.is(layout.status, 403);
  t.regex(
    ((await layout.json()) as { error: { message: string } }).error.message,
    /^image: "oci:" layout paths are for the platform token only/,
  );
  // alice creates one (shard filled in from her token), bob cannot read or delete it.
  const created = await call("/v1/sandboxes", {
    method: "POST",
    token: tokens.alice,
    body: JSON.stringify({ ...good, image: "registry.example:5000/busybox:1", id: "alice-sb" }),
  });
  t.is(created.status, 201);
  const alices = (await created.json()) as { id: string; spec: { shard: string } };
  t.is(alices.spec.shard, "alice");
  // A shard's chosen id is scoped to the shard: "alice-sb-<10 hex>".
  t.regex(alices.id, /^alice-sb-[a-f0-9]{10}$/);
  const sb = alices.id;
  for (const [method, path] of [
    ["GET", `/v1/sandboxes/${sb}`],
    ["DELETE", `/v1/sandboxes/${sb}`],
    ["GET", `/v1/sandboxes/${sb}/logs`],
  ] as const) {
    // Another shard's sandbox is answered exactly like one that does not exist.
    const r = await call(path, { method, token: tokens.bob });
    const missing = await call(path.replace(sb, "no-such-sb"), { method, token: tokens.bob });
    t.is(r.status, 404, `${method} ${path}`);
    t.is(missing.status, 404);
    t.is(
      ((await r.json()) as { error: { message: string } }).error.message,
      ((await missing.json()) as { error: { message: string } }).error.message.replace(
        "no-such-sb",
        sb,
      ),
    );
  }
  const intoAlice = await call("/v1/sandboxes", {
    method: "POST",
    token: tokens.bob,
    body: JSON.stringify({ ...good, shard: "alice" }),
  });
  t.is(intoAlice.status, 403);
  // bob's list does not show alice's sandbox; a forged secret for alice is refused.
  const bobList = (await (await call("/v1/sandboxes", { token: tokens.bob })).json()) as {
    items: unknown[];
  };
  t.is(bobList.items.length, 0);
  t.is((await call("/v1/sandboxes", { token: "alice.forged-secret" })).status, 401);
  t.is((await call(`/v1/sandboxes/${sb}`, { token: tokens.alice })).status, 200);
  t.is((await call(`/v1/sandboxes/${sb}`)).status, 200);
});

test("healthz and metrics answer without a token", async (t) => {
  const { scheduler } = await setup(t);
  t.deepEqual(await (await fetch(`${scheduler.url}/healthz`)).json(), { ok: true });
  const metrics = await (await fetch(`${scheduler.url}/metrics`)).text();
  t.regex(metrics, /shardworks_placer_leader/);
});

test("a corrupt record in etcd is a 500 with a request id (no stack trace), and other requests still work", async (t) => {
  const { etcd, call } = await setup(t);
  await etcd.client.put(keys.sandbox("broken")).value("{not json");
  const response = await call("/v1/sandboxes/broken");
  t.is(response.status, 500);
  const body = (await response.json()) as { error: { code: string; message: string } };
  t.is(body.error.code, "internal");
  const requestId = response.headers.get("x-request-id");
  t.truthy(requestId);
  t.is(body.error.message, `internal error; quote request id ${requestId} when reporting it`);
  // Lists skip the corrupt record instead of failing as a whole.
  t.is((await call("/v1/nodes")).status, 200);
  await call("/v1/sandboxes", { method: "POST", body: JSON.stringify({ ...good, id: "fine" }) });
  const list = (await (await call("/v1/sandboxes")).json()) as { items: { id: string }[] };
  t.deepEqual(
    list.items.map((i) => i.id),
    ["fine"],
  );
});

test("NUL bytes in the command or env, and an oversize command line, are a 400 naming the field", async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  // The default 1 MiB body limit: a 900 KB command fits the body but not a command line.
  const scheduler = await startScheduler({ etcdEndpoints: [etcd.endpoint], platformToken });
  t.teardown(() => scheduler.close());
  const post = async (body: unknown) => {
    const response = await fetch(`${scheduler.url}/v1/sandboxes`, {
      method: "POST",
      headers: { authorization: `Bearer ${platformToken}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return {
      status: response.status,
      body: (await response.json()) as { error: { message: string } },
    };
  };
  const nulCommand = await post({ ...good, command: ["echo", "a\u0000b"] });
  t.is(nulCommand.status, 400);
  t.regex(nulCommand.body.error.message, /command\[1\].*NUL/);
  const nulEnv = await post({ ...good, env: { A: "x\u0000y" } });
  t.is(nulEnv.status, 400);
  t.regex(nulEnv.body.error.message, /env(\.A|\[.A.\]).*NUL/);
  const huge = await post({ ...good, command: ["echo", "x".repeat(900 * 1024)] });
  t.is(huge.status, 400, JSON.stringify(huge.body).slice(0, 300));
  t.regex(huge.body.error.message, /command.*at most 131072 bytes/);
  const fine = await post({ ...good, command: ["echo", "x".repeat(1000)] });
  t.is(fine.status, 201, "a normal command is still accepted");
});
