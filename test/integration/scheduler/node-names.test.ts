/**
 * Node names are DNS subdomains, as Kubernetes names nodes (the DaemonSet passes `spec.nodeName`):
 * an agent named like an EKS node registers, gets work, and is found by name in the API. Node
 * labels and taints are Kubernetes label keys and values, refused by the agent otherwise.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { formatZodIssues } from "../../../runtime/lib/errors";
import {
  nodeName,
  nodeRecordSchema,
  taintSchema,
  type SandboxRecord,
} from "../../../contract/model";
import { NodeAgent } from "../../../runtime/node-agent/agent";
import { createDriver } from "../../../runtime/node-agent/drivers";
import { spawnNodeAgent } from "../../../runtime/node-agent/spawn";
import { buildBusyboxImage } from "../../helpers/images";
import { api, etcdFor, schedulerFor } from "../../helpers/runtime";

const EKS_NODE = "ip-10-0-1-23.ec2.internal";

test("an agent named like an EKS node runs sandboxes and is listed by that name", async (t) => {
  const etcd = await etcdFor(t);
  const scheduler = await schedulerFor(t, etcd);
  const dir = await mkdtemp(join(tmpdir(), "sw-node-names-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const image = buildBusyboxImage(join(dir, "image"));
  const agent = new NodeAgent({
    name: EKS_NODE,
    etcdEndpoints: [etcd.endpoint],
    driver: createDriver("process", { imageStore: { cacheDir: join(dir, "cache") } }),
    capacity: { cpuMillis: 4000, memoryMiB: 4096 },
    dataDir: join(dir, "data"),
    warmPerImage: 0,
  });
  await agent.start();
  t.teardown(() => agent.close());

  const done = await api<SandboxRecord>(scheduler.url, "/v1/sandboxes?wait=exited&timeout=60", {
    method: "POST",
    body: JSON.stringify({ id: "on-eks", image, command: ["true"] }),
  });
  t.is(done.body.status.phase, "exited");
  t.is(done.body.status.node, EKS_NODE);
  const nodes = await api<{ items: { name: string }[] }>(scheduler.url, "/v1/nodes");
  t.deepEqual(
    nodes.body.items.map((n) => n.name),
    [EKS_NODE],
  );
  const listed = await api<{ items: SandboxRecord[] }>(
    scheduler.url,
    `/v1/sandboxes?node=${EKS_NODE}`,
  );
  t.deepEqual(
    listed.body.items.map((s) => s.id),
    ["on-eks"],
  );
});

test("node names: DNS subdomains pass; what Kubernetes would refuse is refused, with the rule", (t) => {
  for (const ok of [EKS_NODE, "node-a", "a", "a.b.c"]) t.true(nodeName.safeParse(ok).success, ok);
  for (const bad of ["Node-A", "a..b", ".a", "a.", "-a", "a_b", `${"a".repeat(64)}.x`, ""]) {
    const result = nodeName.safeParse(bad);
    t.false(result.success, bad);
  }
  const message = nodeName.safeParse("Node_A").error?.issues[0]?.message ?? "";
  t.regex(message, /lowercase letters, digits, '-' and '\.'.*ip-10-0-1-23\.ec2\.internal/);
});

test("node labels and taints are Kubernetes label keys and values: the agent refuses others before it registers, naming the field", async (t) => {
  const base = {
    name: "node-a",
    address: "127.0.0.1:1",
    driver: "process",
    hardwareIsolated: false,
    capacity: { cpuMillis: 1000, memoryMiB: 1024 },
    registeredAt: new Date().toISOString(),
  } as const;
  const good = {
    ...base,
    labels: { "kubernetes.io/arch": "amd64", zone: "", "A_b.c-D": "x" },
    taints: [{ key: "shardworks.dev/microvm", value: "true" }, { key: "dedicated" }],
  };
  t.true(nodeRecordSchema.safeParse(good).success);
  for (const [what, record, field] of [
    ["a label key with a space", { ...base, labels: { "a b": "x" } }, /^labels\.a b: a label key/],
    ["a label value of 64", { ...base, labels: { zone: "a".repeat(64) } }, /^labels\.zone: /],
    ["a taint key with '='", { ...base, taints: [{ key: "a=b" }] }, /^taints\[0\]\.key: /],
    ["an empty taint key", { ...base, taints: [{ key: "" }] }, /^taints\[0\]\.key: /],
    [
      "a taint value with ':'",
      { ...base, taints: [{ key: "a", value: "x:y" }] },
      /^taints\[0\]\.value: /,
    ],
  ] as const) {
    const result = nodeRecordSchema.safeParse(record);
    t.false(result.success, what);
    t.regex(formatZodIssues(result.error!).join("; "), field, what);
  }
  t.regex(
    formatZodIssues(taintSchema.safeParse({ key: "Example.com/x" }).error!).join(""),
    /^key: a label key's prefix/,
  );

  const dir = await mkdtemp(join(tmpdir(), "sw-node-labels-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const config = {
    name: "node-a",
    etcdEndpoints: ["http://127.0.0.1:1"],
    driver: createDriver("process", { imageStore: { cacheDir: join(dir, "cache") } }),
    capacity: { cpuMillis: 1000, memoryMiB: 1024 },
    dataDir: join(dir, "data"),
  };
  t.throws(() => new NodeAgent({ ...config, labels: { "a b": "x" } }), {
    message: /^node agent node-a: labels\.a b: a label key/,
  });
  t.throws(
    () => new NodeAgent({ ...config, taints: [{ key: "x", value: "a b", effect: "NoSchedule" }] }),
    {
      message: /^node agent node-a: taints\[0\]\.value: a label value/,
    },
  );
  // The agent's --label flag says the same, and the process exits before registering.
  await t.throwsAsync(
    spawnNodeAgent({
      name: "node-a",
      etcdEndpoints: ["http://127.0.0.1:1"],
      driver: "process",
      dataDir: join(dir, "spawned"),
      labels: { "bad key": "x" },
      readyTimeoutMs: 30_000,
    }),
    { message: /exited \(2\) before it was ready: .*--label\[0\]: "bad key=x": a label key/s },
  );
});
