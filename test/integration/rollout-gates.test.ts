/**
 * The rollout's health gates (`stacks/rollout-gates.ts`) against a real scheduler on a real etcd
 * with a real node agent process (process driver) running a real busybox sandbox, and a real
 * routing controller whose CSDS reports a real `@grpc/grpc-js-xds` client (and a raw ADS stream
 * that stays silent, then NACKs).
 */
import test, { type ExecutionContext } from "ava";
import * as grpc from "@grpc/grpc-js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnNodeAgent } from "../../runtime/node-agent/spawn";
import { freePort } from "../../runtime/lib/ports";
import { keys } from "../../runtime/lib/keys";
import { adsClientConstructor, TypeUrl } from "../../runtime/routing/xds";
import type { GateContext, GateResult, HealthGate } from "../../stacks/rollout-engine";
import { rolloutGates, schedulerGates, xdsAckedGate } from "../../stacks/rollout-gates";
import { parsePlan } from "../../stacks/rollout-plan";
import { eventually, routingReplicaFor, startXdsClientProcess } from "../helpers/grpc-backends";
import { buildBusyboxImage } from "../helpers/images";
import { PLATFORM_TOKEN, etcdFor, schedulerFor } from "../helpers/runtime";

async function runtimeFor(t: ExecutionContext) {
  const dir = await mkdtemp(join(tmpdir(), "sw-rollout-gates-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const etcd = await etcdFor(t);
  const scheduler = await schedulerFor(t, etcd, { version: "0.2.0" });
  const agent = await spawnNodeAgent({
    name: "node-a",
    etcdEndpoints: [etcd.endpoint],
    driver: "process",
    dataDir: join(dir, "node-a"),
    env: { TMPDIR: dir },
    cpuMillis: 2000,
    memoryMiB: 2048,
  });
  t.teardown(() => agent.stop());
  const image = buildBusyboxImage(join(dir, "image"));
  return { scheduler, image, etcd };
}

/** A routing controller replica registered as `routers/<name>`; its ADS/CSDS address. */
async function routingFor(
  t: ExecutionContext,
  etcd: Awaited<ReturnType<typeof etcdFor>>,
  name: string,
  version = "0.2.0",
): Promise<string> {
  return (await routingReplicaFor(t, etcd.client, name, version)).address;
}

function context(sloMs: number): GateContext {
  return {
    stack: "platform-a",
    version: "0.2.0",
    syntheticSandboxSloMs: sloMs,
    signal: new AbortController().signal,
  };
}

async function results(gates: HealthGate[], sloMs: number): Promise<Record<string, GateResult>> {
  const out: Record<string, GateResult> = {};
  for (const gate of gates) out[gate.name] = await gate.check(context(sloMs));
  return out;
}

test("a healthy runtime passes every gate; missing nodes and a failing sandbox do not", async (t) => {
  const { scheduler, image } = await runtimeFor(t);
  const urls: string[] = [];
  const healthy = schedulerGates({
    token: PLATFORM_TOKEN,
    schedulerUrl: (stack) => {
      urls.push(stack);
      return Promise.resolve(scheduler.url);
    },
    syntheticSandbox: { image, command: ["true"] },
  });
  t.deepEqual(await results(healthy, 30_000), {
    "scheduler-healthz": { ok: true },
    "node-agents-registered": { ok: true },
    "synthetic-sandbox": { ok: true },
  });
  t.deepEqual(urls, ["platform-a", "platform-a", "platform-a"]);

  const broken = schedulerGates({
    token: PLATFORM_TOKEN,
    schedulerUrl: () => Promise.resolve(scheduler.url),
    expectedNodes: () => Promise.resolve(2),
    syntheticSandbox: { image, command: ["sh", "-c", "exit 7"] },
  });
  const got = await results(broken, 30_000);
  t.deepEqual(got["scheduler-healthz"], { ok: true });
  t.deepEqual(got["node-agents-registered"], {
    ok: false,
    reason: "1 of 2 node agent(s) registered",
  });
  const sandbox = got["synthetic-sandbox"];
  t.false(sandbox?.ok);
  t.regex(
    sandbox && !sandbox.ok ? sandbox.reason : "",
    /^synthetic sandbox sb-[0-9a-f]+ ended exited \(exit 7\) after \d+ ms$/,
  );
});

test("a synthetic sandbox slower than its SLO fails the gate; a wrong token is refused", async (t) => {
  const { scheduler, image } = await runtimeFor(t);
  const [, , slow] = schedulerGates({
    token: PLATFORM_TOKEN,
    schedulerUrl: () => Promise.resolve(scheduler.url),
    syntheticSandbox: { image, command: ["sleep", "2"] },
  });
  const result = await slow!.check(context(1_000));
  t.false(result.ok);
  t.regex(
    result.ok ? "" : result.reason,
    /(took \d+ ms; SLO 1000 ms|ended (running|starting|scheduled))/,
  );

  const [, nodes] = schedulerGates({
    token: "wrong-token-0123456789012345678901234",
    schedulerUrl: () => Promise.resolve(scheduler.url),
    syntheticSandbox: { image, command: ["true"] },
  });
  t.deepEqual(await nodes!.check(context(1_000)), {
    ok: false,
    reason: "GET /v1/nodes: 401",
  });
});

test("rolloutGates: the plan's targets reach the runtime; xds-acked counts the clients of every routing controller replica", async (t) => {
  const { scheduler, image, etcd } = await runtimeFor(t);
  const [first, second] = [
    await routingFor(t, etcd, "router-a"),
    await routingFor(t, etcd, "router-b"),
  ];
  const plan = parsePlan({
    waves: [{ stacks: ["platform-a"] }],
    state: "unused.json",
    gates: { xdsNodeId: "gateway-standin" },
    targets: { "platform-a": { schedulerUrl: scheduler.url, xdsClients: 2 } },
  });
  const gates = rolloutGates(plan, {
    token: PLATFORM_TOKEN,
    // The plan names the URL and the count, so the stack's outputs are never read.
    outputs: {
      schedulerUrl: () => Promise.reject(new Error("outputs read")),
      gatewayReplicas: () => Promise.reject(new Error("outputs read")),
    },
    syntheticSandbox: { image, command: ["true"] },
  });
  t.deepEqual(
    gates.map((g) => g.name),
    ["scheduler-healthz", "node-agents-registered", "synthetic-sandbox", "xds-acked"],
  );
  const xds = gates[3]!;
  t.deepEqual(await xds.check(context(30_000)), {
    ok: false,
    reason:
      '0 of 2 xDS client(s) with node id "gateway-standin" connected to 2 routing controller(s)',
  });
  // Two real xDS clients with the gate's node id, each on its own replica (as two gateway pods
  // behind a Service would be): only the scheduler's view across replicas sees both.
  for (const address of [first, second]) {
    const client = startXdsClientProcess(address, "gateway-standin");
    t.teardown(() => client.close());
    t.is(await eventually(() => client.who("xds:///api"), "baseline"), "baseline");
  }
  const passed = await eventually(async () => (await xds.check(context(30_000))).ok, true);
  t.true(passed, "both clients ACKed every resource at the current version");
  t.deepEqual(await results(gates, 30_000), {
    "scheduler-healthz": { ok: true },
    "node-agents-registered": { ok: true },
    "synthetic-sandbox": { ok: true },
    "xds-acked": { ok: true },
  });

  // A stack without targets: the URL and the count (the gateway's replicas) from its outputs.
  const fromOutputs = rolloutGates(parsePlan({ waves: [{ stacks: ["platform-a"] }], state: "s" }), {
    token: PLATFORM_TOKEN,
    outputs: {
      schedulerUrl: () => Promise.resolve(scheduler.url),
      gatewayReplicas: () => Promise.resolve(3),
    },
    syntheticSandbox: { image, command: ["true"] },
  });
  t.deepEqual(await fromOutputs[0]!.check(context(30_000)), { ok: true });
  t.deepEqual(await fromOutputs[3]!.check(context(30_000)), {
    ok: false,
    reason:
      '0 of 3 xDS client(s) with node id "shardworks-gateway" connected to 2 routing controller(s)',
  });
});

test("xds-acked: a silent client, a NACK, an old or dead replica, no replica, a shard token all fail", async (t) => {
  const etcd = await etcdFor(t);
  const scheduler = await schedulerFor(t, etcd);
  const gate = xdsAckedGate({
    token: PLATFORM_TOKEN,
    schedulerUrl: () => Promise.resolve(scheduler.url),
    nodeId: "edge-1",
  });
  t.deepEqual(await gate.check(context(1_000)), {
    ok: false,
    reason: "no routing controller is registered with the scheduler",
  });
  const xdsAddress = await routingFor(t, etcd, "router-a");
  // A raw ADS stream from Envoy's proto: it asks for clusters and listeners, stays silent, NACKs.
  const Client = adsClientConstructor();
  const ads = new Client(xdsAddress, grpc.credentials.createInsecure());
  t.teardown(() => ads.close());
  const call = (
    ads as unknown as { StreamAggregatedResources(): grpc.ClientDuplexStream<unknown, unknown> }
  ).StreamAggregatedResources();
  call.on("error", () => undefined);
  t.teardown(() => call.cancel());
  const responses: { version_info: string; nonce: string; type_url: string }[] = [];
  call.on("data", (r: { version_info: string; nonce: string; type_url: string }) =>
    responses.push(r),
  );
  const request = (typeUrl: string, extra: Record<string, unknown> = {}) =>
    call.write({ node: { id: "edge-1" }, type_url: typeUrl, resource_names: [], ...extra });
  request(TypeUrl.Cluster);
  while (responses.length === 0) await new Promise((r) => setTimeout(r, 20));
  const sent = responses[0]!;
  t.deepEqual(await gate.check(context(1_000)), {
    ok: false,
    reason: `"edge-1" has not ACKed the current configuration: Listener not requested yet; Cluster "baseline/api" sent at version ${sent.version_info}, not ACKed yet`,
  });
  request(TypeUrl.Cluster, {
    response_nonce: sent.nonce,
    error_detail: { code: 3, message: "cluster api: unsupported lb_policy" },
  });
  const nacked = `"edge-1" has not ACKed the current configuration: Listener not requested yet; Cluster "baseline/api" NACKed (version ${sent.version_info}: cluster api: unsupported lb_policy)`;
  const seen = await eventually(async () => {
    const result = await gate.check(context(1_000));
    return result.ok ? "ok" : result.reason;
  }, nacked);
  t.is(seen, nacked);

  // A replica still on the old version, and one registered that does not answer.
  await routingFor(t, etcd, "router-old", "0.1.0");
  t.deepEqual(await gate.check(context(1_000)), {
    ok: false,
    reason: "routing controller router-old runs 0.1.0, not 0.2.0 yet",
  });
  const dead = await freePort();
  const lease = etcd.client.lease(30);
  t.teardown(() => lease.revoke().catch(() => undefined));
  await lease.put(keys.router("router-dead")).value(
    JSON.stringify({
      name: "router-dead",
      address: `127.0.0.1:${dead}`,
      version: "0.2.0",
      startedAt: new Date().toISOString(),
    }),
  );
  const down = await gate.check(context(1_000));
  t.false(down.ok);
  t.regex(
    down.ok ? "" : down.reason,
    /^routing controller router-dead \(127\.0\.0\.1:\d+\) did not answer: 14 UNAVAILABLE/,
  );

  // The report is the platform's: a shard token is refused.
  const shardToken = await fetch(`${scheduler.url}/v1/xds/clients`, {
    headers: { authorization: "Bearer alice.0123456789abcdef0123456789abcdef" },
  });
  t.true([401, 403].includes(shardToken.status));
});

test("scheduler-healthz: a scheduler that reports an older version, or none, does not pass", async (t) => {
  const etcd = await etcdFor(t);
  const old = await schedulerFor(t, etcd, { version: "0.1.0", placer: false });
  const [healthz] = schedulerGates({
    token: PLATFORM_TOKEN,
    schedulerUrl: () => Promise.resolve(old.url),
    syntheticSandbox: { image: "unused", command: ["true"] },
  });
  const response = await fetch(`${old.url}/healthz`);
  t.deepEqual(await response.json(), { ok: true, version: "0.1.0" });
  t.deepEqual(await healthz!.check(context(1_000)), {
    ok: false,
    reason: "the scheduler answering runs 0.1.0, not 0.2.0 yet",
  });
  const current = await schedulerFor(t, etcd, { version: "0.2.0", placer: false });
  const [healthzNew] = schedulerGates({
    token: PLATFORM_TOKEN,
    schedulerUrl: () => Promise.resolve(current.url),
    syntheticSandbox: { image: "unused", command: ["true"] },
  });
  t.deepEqual(await healthzNew!.check(context(1_000)), { ok: true });
  // No placers: three schedulers on one etcd would race in the election for nothing here.
  const unversioned = await schedulerFor(t, etcd, { placer: false });
  const [healthzNone] = schedulerGates({
    token: PLATFORM_TOKEN,
    schedulerUrl: () => Promise.resolve(unversioned.url),
    syntheticSandbox: { image: "unused", command: ["true"] },
  });
  t.deepEqual(await healthzNone!.check(context(1_000)), {
    ok: false,
    reason: "the scheduler answering runs an unreported version, not 0.2.0 yet",
  });
});
