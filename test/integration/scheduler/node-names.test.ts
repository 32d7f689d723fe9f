/**
 * Node names are DNS subdomains, as Kubernetes names nodes (the DaemonSet passes `spec.nodeName`):
 * an agent named like an EKS node registers, gets work, and is found by name in the API.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { nodeName, type SandboxRecord } from "../../../runtime/lib/model";
import { NodeAgent } from "../../../runtime/node-agent/agent";
import { createDriver } from "../../../runtime/node-agent/drivers";
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
