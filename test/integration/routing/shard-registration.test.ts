/**
 * The ShardRegistration provider's functions against the REAL scheduler API (with the shard
 * sub-app mounted, real etcd): create registers and returns the token once, update renews and
 * changes forks, diff is sensible, delete deregisters (and tolerates a shard already reaped).
 */
import test from "ava";
import { startEtcd } from "../../../runtime/lib/etcd-server";
import { ShardStore } from "../../../runtime/routing/shard-store";
import { startScheduler } from "../../../runtime/scheduler/server";
import {
  shardRegistrationProvider as provider,
  type ShardRegistrationProps,
} from "../../../components/shard-registration";

const PLATFORM = "platform-token-for-tests-0123456789";

async function setup(t: import("ava").ExecutionContext) {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const scheduler = await startScheduler({
    etcdEndpoints: [etcd.endpoint],
    platformToken: PLATFORM,
    port: 0,
    placer: false,
  });
  t.teardown(() => scheduler.close());
  const props: ShardRegistrationProps = {
    apiUrl: scheduler.url,
    token: PLATFORM,
    name: "alice",
    routingKey: "alice-key",
    owner: "alice@example.com",
    forks: { api: "api.shard-alice.svc.cluster.local:8080" },
    ttlSeconds: 3600,
    renewKey: "2026-01-01T00:00:00Z",
  };
  return { store: new ShardStore(etcd.client), props, url: scheduler.url };
}

test("create, update, diff and delete drive the real shard API", async (t) => {
  const { store, props, url } = await setup(t);
  t.deepEqual((await provider.check!(undefined as never, props)).failures, undefined);
  const created = await provider.create(props);
  t.is(created.id, "alice");
  t.regex(created.outs!.shardToken, /^alice\./);
  t.deepEqual((await store.get("alice"))?.record.forks, props.forks);

  // The returned token really is the shard's token: it reads its own shard.
  const own = await fetch(`${url}/v1/shards/alice`, {
    headers: { authorization: `Bearer ${created.outs!.shardToken}` },
  });
  t.is(own.status, 200);

  const again = provider.create(props);
  await t.throwsAsync(again, { message: /already registered/ });

  const news = { ...props, forks: { ...props.forks, web: "web.shard-alice.svc.cluster.local:80" } };
  const diff = await provider.diff!("alice", created.outs!, news);
  t.true(diff.changes);
  t.deepEqual(diff.replaces, []);
  t.false((await provider.diff!("alice", created.outs!, props)).changes, "no change, no diff");
  t.deepEqual(
    (await provider.diff!("alice", created.outs!, { ...props, name: "alice2" })).replaces,
    ["name"],
  );
  t.true((await provider.diff!("alice", created.outs!, { ...props, renewKey: "later" })).changes);

  const updated = await provider.update!("alice", created.outs!, news);
  t.is(updated.outs!.shardToken, created.outs!.shardToken, "the token survives updates");
  t.deepEqual(Object.keys((await store.get("alice"))!.record.forks).sort(), ["api", "web"]);

  const read = await provider.read!("alice", updated.outs);
  t.is(read.id, "alice");

  await provider.delete!("alice", updated.outs!);
  t.is(await store.get("alice"), undefined, "destroy deregisters");
  await t.notThrowsAsync(provider.delete!("alice", updated.outs!), "already gone is fine");
  t.deepEqual(await provider.read!("alice", updated.outs), {});
});

test("check and the API refuse bad registrations with the field named", async (t) => {
  const { props } = await setup(t);
  const checked = await provider.check!(undefined as never, {
    ...props,
    name: "Alice",
    routingKey: "a.*",
    forks: { api: "no-port" },
    ttlSeconds: 0,
  });
  t.deepEqual(
    checked.failures?.map((f) => f.property),
    ["name", "routingKey", "forks.api", "ttlSeconds"],
  );
  await t.throwsAsync(provider.create({ ...props, token: "wrong-token-wrong-token" }), {
    message: /HTTP 401/,
  });
});

test("update after the TTL passed (the reaper removed the shard) keeps the new token the API returns", async (t) => {
  const { store, props, url } = await setup(t);
  const created = await provider.create(props);
  await store.delete("alice"); // what the reaper does at expiry
  const updated = await provider.update!("alice", created.outs!, { ...props, renewKey: "2" });
  t.not(updated.outs!.shardToken, created.outs!.shardToken, "a new shard, a new token");
  const own = await fetch(`${url}/v1/shards/alice`, {
    headers: { authorization: `Bearer ${updated.outs!.shardToken}` },
  });
  t.is(own.status, 200, "the stored token is the live shard's token");
});

test("create never overwrites a shard someone else registered", async (t) => {
  const { store, props, url } = await setup(t);
  const theirs = await fetch(`${url}/v1/shards/alice`, {
    method: "PUT",
    headers: { authorization: `Bearer ${PLATFORM}`, "content-type": "application/json" },
    body: JSON.stringify({ routingKey: "their-key", owner: "bob@example.com", forks: [] }),
  });
  t.is(theirs.status, 201);
  await t.throwsAsync(provider.create(props), { message: /"alice" is already registered/ });
  const stored = await store.get("alice");
  t.is(stored?.record.owner, "bob@example.com", "their shard is untouched");
  t.is(stored?.record.routingKey, "their-key");
});

test("a changed apiUrl replaces the registration", async (t) => {
  const { props } = await setup(t);
  const outs = { ...props, shardToken: "alice.x", expiresAt: new Date().toISOString() };
  const diff = await provider.diff!("alice", outs, { ...props, apiUrl: "http://other:8080" });
  t.deepEqual(diff.replaces, ["apiUrl"]);
});

test("delete falls back to the shard token when the platform token is refused", async (t) => {
  const { store, props } = await setup(t);
  const created = await provider.create(props);
  await provider.delete!("alice", { ...created.outs!, token: "rotated-platform-token-xxxxxxxx" });
  t.is(await store.get("alice"), undefined);
});

test("destroy with the API unreachable: deleted if the shard has expired, an error if not", async (t) => {
  const { props } = await setup(t);
  const gone = { ...props, apiUrl: "http://127.0.0.1:1", shardToken: "alice.x" };
  const past = new Date(Date.now() - 1000).toISOString();
  const future = new Date(Date.now() + 3_600_000).toISOString();
  await t.notThrowsAsync(provider.delete!("alice", { ...gone, expiresAt: past }));
  await t.throwsAsync(provider.delete!("alice", { ...gone, expiresAt: future }), {
    message: /cannot reach the shard API/,
  });
});

test("check uses the shared schemas: 7-day TTL maximum and the routing key length cap", async (t) => {
  const { props } = await setup(t);
  const checked = await provider.check!(undefined as never, {
    ...props,
    routingKey: "k".repeat(33),
    ttlSeconds: 7 * 86_400 + 1,
  });
  t.deepEqual(
    checked.failures?.map((f) => f.property),
    ["routingKey", "ttlSeconds"],
  );
  t.deepEqual(
    (await provider.check!(undefined as never, { ...props, ttlSeconds: 7 * 86_400 })).failures,
    undefined,
  );
});
