/**
 * The rollout's scheduler-API health gates (`stacks/rollout-gates.ts`) against a real scheduler on
 * a real etcd with a real node agent process (process driver) running a real busybox sandbox.
 */
import test, { type ExecutionContext } from "ava";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnNodeAgent } from "../../runtime/node-agent/spawn";
import type { GateContext, GateResult, HealthGate } from "../../stacks/rollout-engine";
import { schedulerGates } from "../../stacks/rollout-gates";
import { buildBusyboxImage } from "../helpers/images";
import { PLATFORM_TOKEN, etcdFor, schedulerFor } from "../helpers/runtime";

async function runtimeFor(t: ExecutionContext) {
  const dir = await mkdtemp(join(tmpdir(), "sw-rollout-gates-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const etcd = await etcdFor(t);
  const scheduler = await schedulerFor(t, etcd);
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
  return { scheduler, image };
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
