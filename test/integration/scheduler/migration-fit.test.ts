/**
 * What the migrate endpoint refuses before it touches a node agent: a shard token (nodes are the
 * platform's), and a target that placement would not choose (taint, label, capacity). Real etcd
 * and a real scheduler; the node records are written as agents write them.
 */
import test, { type ExecutionContext } from "ava";
import { Store, type SandboxRecord } from "../../../runtime/lib";
import { api, etcdFor, PLATFORM_TOKEN, registerNode, schedulerFor } from "../../helpers/runtime";

/** A scheduler (placer off) with nodes `source` and the given `target`s, and `id` running on source. */
async function bed(t: ExecutionContext, targets: Parameters<typeof registerNode>[4][]) {
  const etcd = await etcdFor(t);
  const scheduler = await schedulerFor(t, etcd, { placer: false });
  const capacity = { cpuMillis: 1000, memoryMiB: 512 };
  await registerNode(t, etcd.client, "source", capacity);
  for (const [i, extra] of targets.entries()) {
    await registerNode(t, etcd.client, `target-${i}`, capacity, extra);
  }
  const store = new Store(etcd.client);
  /** Mark sandbox `id` running on `node`, as an agent would. */
  const markRunning = async (id: string, node: string): Promise<void> => {
    const found = await store.getSandbox(id);
    if (!found) throw new Error(`sandbox ${id} vanished`);
    await store.updateSandbox(
      {
        ...found.value,
        status: {
          ...found.value.status,
          phase: "running",
          node,
          updatedAt: new Date().toISOString(),
        },
      },
      found.modRevision,
    );
  };
  /** Create `id` through the API and mark it running on `node`, as an agent would. */
  const running = async (id: string, node: string, memoryMiB = 128): Promise<void> => {
    const created = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes", {
      method: "POST",
      body: JSON.stringify({
        id,
        image: "registry.example.com/app:1",
        command: ["sleep", "60"],
        resources: { cpuMillis: 100, memoryMiB },
      }),
    });
    t.is(created.status, 201, JSON.stringify(created.body));
    await markRunning(id, node);
  };
  const migrate = (id: string, node: string, token = PLATFORM_TOKEN) =>
    fetch(`${scheduler.url}/v1/sandboxes/${id}/migrate`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ node }),
    }).then(async (r) => ({
      status: r.status,
      error: ((await r.json()) as { error?: { code: string; message: string } }).error,
    }));
  return { scheduler, store, running, markRunning, migrate };
}

test("a shard token cannot migrate, not even its own sandbox, and learns nothing about nodes", async (t) => {
  const { scheduler, migrate } = await bed(t, [{}]);
  const shard = await api<{ token: string }>(scheduler.url, "/v1/shards/alice", {
    method: "PUT",
    body: JSON.stringify({ routingKey: "key-alice", owner: "alice", forks: [], ttlSeconds: 600 }),
  });
  const token = shard.body.token;
  const own = await fetch(`${scheduler.url}/v1/sandboxes`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ id: "mine", image: "registry.example.com/app:1", command: ["true"] }),
  });
  t.is(own.status, 201);
  const answers = await Promise.all(
    [
      ["mine", "target-0"],
      ["mine", "no-such-node"],
      ["no-such-sandbox", "target-0"],
    ].map(([id, node]) => migrate(id!, node!, token)),
  );
  for (const answer of answers) {
    t.is(answer.status, 403);
    t.is(answer.error?.code, "forbidden");
    t.regex(answer.error?.message ?? "", /needs the platform token/);
    t.notRegex(answer.error?.message ?? "", /target-0|source|process|not registered/);
  }
});

test("migrate refuses a target that placement would refuse: untolerated taint, missing label, no room", async (t) => {
  const { store, running, migrate } = await bed(t, [
    { taints: [{ key: "dedicated", value: "gpu", effect: "NoSchedule" }] },
    { labels: { zone: "b" } },
    {},
  ]);
  await running("app", "source");
  // target-2 has room for 512 MiB; this one takes 448 of it.
  await running("big", "target-2", 448);
  const cases: [string, RegExp][] = [
    ["target-0", /taint dedicated=gpu not tolerated/],
    ["target-2", /not enough memory/],
  ];
  for (const [node, reason] of cases) {
    const answer = await migrate("app", node);
    t.is(answer.status, 409, `${node}: ${JSON.stringify(answer.error)}`);
    t.is(answer.error?.code, "target_unfit");
    t.regex(answer.error?.message ?? "", reason);
    t.regex(answer.error?.message ?? "", new RegExp(`node ${node} cannot take sandbox app`));
  }
  const after = await store.getSandbox("app");
  t.is(after?.value.status.phase, "running", "a refused migration leaves the sandbox as it was");
  t.is(after?.value.status.node, "source");

  // A nodeSelector the target does not satisfy: the sandbox asked for zone a.
  const withSelector = await store.getSandbox("app");
  if (!withSelector) throw new Error("app vanished");
  await store.updateSandbox(
    { ...withSelector.value, spec: { ...withSelector.value.spec, nodeSelector: { zone: "a" } } },
    withSelector.modRevision,
  );
  const selector = await migrate("app", "target-1");
  t.is(selector.status, 409);
  t.regex(selector.error?.message ?? "", /label zone=a missing/);
});

test("a shard token reading logs from a node that does not answer is not told the agent's address; the platform is", async (t) => {
  const { scheduler, markRunning } = await bed(t, []);
  const shard = await api<{ token: string }>(scheduler.url, "/v1/shards/alice", {
    method: "PUT",
    body: JSON.stringify({ routingKey: "key-alice", owner: "alice", forks: [], ttlSeconds: 600 }),
  });
  const token = shard.body.token;
  const created = await fetch(`${scheduler.url}/v1/sandboxes`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ image: "registry.example.com/app:1", command: ["sleep", "60"] }),
  });
  const { id } = (await created.json()) as { id: string };
  // Running on "source", whose agent address (127.0.0.1:1) does not answer.
  await markRunning(id, "source");
  const logsAs = async (bearer: string) => {
    const r = await fetch(`${scheduler.url}/v1/sandboxes/${id}/logs`, {
      headers: { authorization: `Bearer ${bearer}` },
    });
    return { status: r.status, text: await r.text() };
  };
  const asShard = await logsAs(token);
  t.is(asShard.status, 503);
  t.regex(asShard.text, /did not serve its logs; retry later/);
  t.notRegex(asShard.text, /127\.0\.0\.1/);
  const asPlatform = await logsAs(PLATFORM_TOKEN);
  t.is(asPlatform.status, 503);
  t.regex(asPlatform.text, /node agent at 127\.0\.0\.1:1/);
});
