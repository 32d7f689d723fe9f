/**
 * What a shard token can and cannot reach through the scheduler API (issue 13): image pulls
 * cannot aim the node at its own network, a reused shard name does not inherit sandboxes, an
 * expired shard's token stops at once, nodes are the platform's, and nothing answers differently
 * for "exists but not yours" and "does not exist". Real etcd, real scheduler, loopback only.
 */
import { once } from "node:events";
import { createServer } from "node:net";
import test, { type ExecutionContext } from "ava";
import { keys, type ShardRecord } from "../../../runtime/lib";
import { etcdFor, PLATFORM_TOKEN, schedulerFor } from "../../helpers/runtime";
import type { SchedulerConfig } from "../../../runtime/scheduler";

type Call = (
  path: string,
  init?: RequestInit & { token?: string },
) => Promise<{
  status: number;
  body: { error?: { code: string; message: string } } & Record<string, unknown>;
}>;

async function setup(t: ExecutionContext, config: Partial<SchedulerConfig> = {}) {
  const etcd = await etcdFor(t);
  const scheduler = await schedulerFor(t, etcd, { placer: false, ...config });
  const call: Call = async (path, init = {}) => {
    const response = await fetch(`${scheduler.url}${path}`, {
      ...init,
      headers: {
        authorization: `Bearer ${init.token ?? PLATFORM_TOKEN}`,
        "content-type": "application/json",
      },
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : {} };
  };
  /** Create a shard through the API (platform token); returns its token. */
  const shard = async (name: string, owner = name, ttlSeconds = 3600): Promise<string> => {
    const r = await call(`/v1/shards/${name}`, {
      method: "PUT",
      body: JSON.stringify({ routingKey: `key-${name}`, owner, forks: [], ttlSeconds }),
    });
    if (r.status !== 201) throw new Error(`shard ${name}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.token as string;
  };
  return { etcd, scheduler, call, shard };
}

const sandbox = (image: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ image, command: ["true"], ...extra });

test("a shard token cannot pull from loopback, private, link-local or local-name registries; open and closed ports answer alike", async (t) => {
  const { call, shard } = await setup(t);
  const token = await shard("alice");
  const open = createServer().listen(0, "127.0.0.1");
  await once(open, "listening");
  t.teardown(() => open.close());
  const openPort = (open.address() as { port: number }).port;
  const closedPort = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
  const answers = await Promise.all(
    [openPort, closedPort].map((port) =>
      call("/v1/sandboxes", {
        method: "POST",
        token,
        body: sandbox(`127.0.0.1:${port}/x:1`),
      }),
    ),
  );
  for (const answer of answers) {
    t.is(answer.status, 403);
    t.regex(answer.body.error?.message ?? "", /^image: registry "127\.0\.0\.1:\d+" is a loopback/);
  }
  t.is(
    answers[0]?.body.error?.message.replace(String(openPort), "P"),
    answers[1]?.body.error?.message.replace(String(closedPort), "P"),
    "an open and a closed port get the same answer",
  );
  for (const registry of [
    "169.254.169.254",
    "10.0.0.5:5000",
    "192.168.1.1",
    "172.16.0.1:443",
    "100.64.0.1",
    "localhost:5000",
    "[::1]:5000",
    "[fe80::1]:5000",
    "[::ffff:127.0.0.1]:5000",
    "[::ffff:0:7f00:1]:5000",
    "[2002:7f00:1::1]:5000",
    "[fec0::1]",
    "[fd00::1]",
    "2130706433:80",
    "0x7f.0.0.1:80",
    "registry.internal",
    "registry.localhost:5000",
    "metadata.google.internal",
    "0.0.0.0:5000",
  ]) {
    const r = await call("/v1/sandboxes", {
      method: "POST",
      token,
      body: sandbox(`${registry}/x:1`),
    });
    t.true(r.status === 403 || r.status === 400, `${registry}: ${r.status}`);
    t.regex(r.body.error?.message ?? "", /^image: /, registry);
  }
  // A public registry is fine for a shard, and the platform may still name a loopback one.
  t.is(
    (
      await call("/v1/sandboxes", {
        method: "POST",
        token,
        body: sandbox("registry.example.com/x:1"),
      })
    ).status,
    201,
  );
  t.is(
    (await call("/v1/sandboxes", { method: "POST", body: sandbox(`127.0.0.1:${openPort}/x:1`) }))
      .status,
    201,
  );
});

test("with shardRegistries configured, a shard token pulls only from those (even a private one)", async (t) => {
  const { call, shard } = await setup(t, { shardRegistries: ["10.0.0.5:5000"] });
  const token = await shard("alice");
  t.is(
    (await call("/v1/sandboxes", { method: "POST", token, body: sandbox("10.0.0.5:5000/x:1") }))
      .status,
    201,
  );
  const other = await call("/v1/sandboxes", {
    method: "POST",
    token,
    body: sandbox("registry.example.com/x:1"),
  });
  t.is(other.status, 403);
  t.regex(other.body.error?.message ?? "", /^image: registry "registry\.example\.com" is not one/);
});

test("the API tells the node how a sandbox's image may be fetched: public addresses only for a shard token's, unless its registry is allowed; never the caller", async (t) => {
  const { call, shard } = await setup(t, { shardRegistries: ["registry.internal.example.com"] });
  const token = await shard("alice");
  const accessOf = async (image: string, asShard: boolean) => {
    const r = await call("/v1/sandboxes", {
      method: "POST",
      ...(asShard ? { token } : {}),
      body: sandbox(image),
    });
    t.is(r.status, 201, JSON.stringify(r.body));
    return (r.body.spec as { registryAccess?: string }).registryAccess;
  };
  t.is(await accessOf("registry.internal.example.com/x:1", true), "any", "an allowed registry");
  t.is(await accessOf("registry.example.com/x:1", false), "any", "the platform's: any");
  const open = await setup(t);
  const openToken = await open.shard("bob");
  const public_ = await open.call("/v1/sandboxes", {
    method: "POST",
    token: openToken,
    body: sandbox("registry.example.com/x:1"),
  });
  t.is((public_.body.spec as { registryAccess?: string }).registryAccess, "public");
  for (const asShard of [true, false]) {
    const forged = await call("/v1/sandboxes", {
      method: "POST",
      ...(asShard ? { token } : {}),
      body: sandbox("registry.internal.example.com/x:1", { registryAccess: "any" }),
    });
    t.is(forged.status, 400, "registryAccess is the API's to set");
    t.regex(forged.body.error?.message ?? "", /registryAccess/);
  }
});

test("a shard's sandboxes are bound to the shard, not its name: a later shard of the same name under another owner cannot reach them, and deleting a shard deletes them", async (t) => {
  const { call, shard, etcd } = await setup(t);
  const first = await shard("reused", "alice@example.com");
  const made = await call("/v1/sandboxes", {
    method: "POST",
    token: first,
    body: sandbox("registry.example.com/x:1", { id: "secret" }),
  });
  t.is(made.status, 201);
  const id = made.body.id as string;
  // The platform kept one of this shard's sandboxes alive across the delete (as if the delete
  // had stopped half way): re-put it after the shard is gone.
  const raw = await etcd.client.get(keys.sandbox(id)).string();
  t.is((await call("/v1/shards/reused", { method: "DELETE" })).status, 204);
  t.is((await call(`/v1/sandboxes/${id}`)).status, 404, "deleting the shard deleted its sandbox");
  await etcd.client.put(keys.sandbox(id)).value(raw ?? "");
  const second = await shard("reused", "mallory@example.com");
  for (const path of [`/v1/sandboxes/${id}`, `/v1/sandboxes/${id}/logs`]) {
    const r = await call(path, { token: second });
    t.is(r.status, 404, path);
  }
  const list = await call("/v1/sandboxes", { token: second });
  t.deepEqual(list.body.items, [], "the new shard lists none of the old one's sandboxes");
  t.is((await call(`/v1/sandboxes/${id}`, { method: "DELETE", token: second })).status, 404);
  t.is((await call(`/v1/sandboxes/${id}`)).status, 200, "the platform still sees it");
});

test("an expired shard's token is refused at once, before the reaper deletes the record", async (t) => {
  const { call, shard, etcd } = await setup(t);
  const token = await shard("brief", "alice", 1);
  t.is((await call("/v1/shards/brief", { token })).status, 200);
  // Let it expire (the record stays: no routing controller runs its reaper here).
  const record = JSON.parse(
    (await etcd.client.get(keys.shard("brief")).string()) ?? "{}",
  ) as ShardRecord;
  await new Promise((resolve) =>
    setTimeout(resolve, Math.max(0, Date.parse(record.expiresAt) - Date.now() + 50)),
  );
  t.truthy(await etcd.client.get(keys.shard("brief")).string(), "the record is still there");
  for (const [method, path, body] of [
    ["GET", "/v1/shards/brief", undefined],
    ["POST", "/v1/sandboxes", sandbox("registry.example.com/x:1")],
    ["GET", "/v1/sandboxes", undefined],
  ] as const) {
    const r = await call(path, { method, token, ...(body ? { body } : {}) });
    t.is(r.status, 401, `${method} ${path}`);
    t.is(r.body.error?.code, "token_expired");
    t.regex(r.body.error?.message ?? "", /shard brief expired at/);
  }
});

test("GET /v1/nodes is for the platform token only", async (t) => {
  const { call, shard } = await setup(t);
  const token = await shard("alice");
  const r = await call("/v1/nodes", { token });
  t.is(r.status, 403);
  t.regex(r.body.error?.message ?? "", /GET \/v1\/nodes needs the platform token/);
  t.is((await call("/v1/nodes")).status, 200);
  const q = await call("/v1/nodes?address=1");
  t.is(q.status, 400);
  t.regex(q.body.error?.message ?? "", /query/);
});

test("no existence oracle: another shard's ids answer like unknown ones, and chosen ids are scoped per shard", async (t) => {
  const { call, shard } = await setup(t);
  const alice = await shard("alice");
  const bob = await shard("bob");
  const a = await call("/v1/sandboxes", {
    method: "POST",
    token: alice,
    body: sandbox("registry.example.com/x:1", { id: "db-migration" }),
  });
  t.is(a.status, 201);
  t.regex(a.body.id as string, /^db-migration-[a-f0-9]{10}$/);
  // bob asking for the same id gets his own sandbox, not a 409 that reveals alice's.
  const b = await call("/v1/sandboxes", {
    method: "POST",
    token: bob,
    body: sandbox("registry.example.com/x:1", { id: "db-migration" }),
  });
  t.is(b.status, 201);
  t.not(b.body.id, a.body.id);
  // alice retrying her create is a 409 on her own sandbox.
  const again = await call("/v1/sandboxes", {
    method: "POST",
    token: alice,
    body: sandbox("registry.example.com/x:1", { id: "db-migration" }),
  });
  t.is(again.status, 409);
  // bob probing alice's real id: same status and message as for an id nobody has.
  const probe = await call(`/v1/sandboxes/${a.body.id as string}`, { token: bob });
  const unknown = await call(`/v1/sandboxes/db-migration-0000000000`, { token: bob });
  t.is(probe.status, 404);
  t.is(unknown.status, 404);
  t.is(
    probe.body.error?.message.replace(a.body.id as string, "ID"),
    unknown.body.error?.message.replace("db-migration-0000000000", "ID"),
  );
  // The platform chooses ids as given.
  const p = await call("/v1/sandboxes", {
    method: "POST",
    body: sandbox("registry.example.com/x:1", { id: "db-migration" }),
  });
  t.is(p.status, 201);
  t.is(p.body.id, "db-migration");
  // An unknown shard name and a known one with a wrong secret: the same 401.
  const wrong = await call("/v1/sandboxes", { token: "alice.not-the-secret" });
  const nobody = await call("/v1/sandboxes", { token: "nobody.not-the-secret" });
  t.is(wrong.status, 401);
  t.deepEqual(wrong.body, nobody.body);
});

test("a sandbox written before shard uids existed belongs to a shard of its name only if it is not older than the shard", async (t) => {
  const { call, shard, etcd } = await setup(t);
  const token = await shard("legacy");
  const created = JSON.parse(
    (await etcd.client.get(keys.shard("legacy")).string()) ?? "{}",
  ) as ShardRecord;
  const legacy = (id: string, createdAt: string) =>
    etcd.client.put(keys.sandbox(id)).value(
      JSON.stringify({
        id,
        spec: {
          ...JSON.parse(sandbox("registry.example.com/x:1")),
          env: {},
          resources: { cpuMillis: 250, memoryMiB: 128 },
          nodeSelector: {},
          tolerations: [],
          ports: [],
          network: false,
          shard: "legacy",
        },
        status: { phase: "pending", endpoints: {}, updatedAt: createdAt },
        createdAt,
      }),
    );
  await legacy(
    "from-an-earlier-shard",
    new Date(Date.parse(created.createdAt) - 60_000).toISOString(),
  );
  await legacy("from-this-shard", new Date(Date.parse(created.createdAt) + 1_000).toISOString());
  t.is((await call("/v1/sandboxes/from-an-earlier-shard", { token })).status, 404);
  t.is((await call("/v1/sandboxes/from-this-shard", { token })).status, 200);
  const ids = ((await call("/v1/sandboxes", { token })).body.items as { id: string }[]).map(
    (s) => s.id,
  );
  t.deepEqual(ids, ["from-this-shard"]);
});

test("a shard token's sandbox gets no network unless the platform allows it; the platform's may", async (t) => {
  const { call, shard } = await setup(t);
  const token = await shard("alice");
  const networked = sandbox("registry.example.com/app:1", { network: true, ports: [8080] });
  const refused = await call("/v1/sandboxes", { method: "POST", token, body: networked });
  t.is(refused.status, 403);
  t.regex(
    refused.body.error?.message ?? "",
    /^network: .*metadata service.*SHARDWORKS_SHARD_NETWORK=allow/,
  );
  const platform = await call("/v1/sandboxes", { method: "POST", body: networked });
  t.is(platform.status, 201, JSON.stringify(platform.body));
  const quiet = await call("/v1/sandboxes", {
    method: "POST",
    token,
    body: sandbox("registry.example.com/app:1"),
  });
  t.is(quiet.status, 201, "without network a shard token's sandbox is taken");

  const allowing = await setup(t, { shardNetwork: true });
  const allowed = await allowing.call("/v1/sandboxes", {
    method: "POST",
    token: await allowing.shard("bob"),
    body: networked,
  });
  t.is(allowed.status, 201, JSON.stringify(allowed.body));
});
