import test from "ava";
import { sandboxSpecSchema, type NodeRecord } from "../../../runtime/lib";
import { desiredNodeCount } from "../../../runtime/scheduler/autoscaler";
import { placeSandbox, unfitReason } from "../../../runtime/scheduler/placement";
import { createSandboxBodySchema } from "../../../runtime/scheduler/validation";

const node = (name: string, extra: Partial<NodeRecord> = {}): NodeRecord => ({
  name,
  address: "127.0.0.1:1",
  driver: "process",
  hardwareIsolated: false,
  capacity: { cpuMillis: 1000, memoryMiB: 1024 },
  labels: {},
  taints: [],
  registeredAt: "2026-11-22T00:00:00.000Z",
  ...extra,
});
const spec = (extra: Record<string, unknown> = {}) =>
  sandboxSpecSchema.parse({
    image: "oci:/x:latest",
    command: ["true"],
    resources: { cpuMillis: 300, memoryMiB: 100 },
    ...extra,
  });

test("filter: driver, selector, taints and capacity each exclude a node with a reason", (t) => {
  const cases: [
    string,
    NodeRecord,
    ReturnType<typeof spec>,
    { cpuMillis: number; memoryMiB: number } | undefined,
    RegExp | undefined,
  ][] = [
    ["fits", node("a"), spec(), undefined, undefined],
    [
      "driver",
      node("a"),
      spec({ driver: "qemu" }),
      undefined,
      /driver process, sandbox asks for qemu/,
    ],
    [
      "selector",
      node("a", { labels: { zone: "b" } }),
      spec({ nodeSelector: { zone: "a" } }),
      undefined,
      /label zone=a missing/,
    ],
    [
      "taint",
      node("a", { taints: [{ key: "microvm", value: "", effect: "NoSchedule" }] }),
      spec(),
      undefined,
      /taint microvm= not tolerated/,
    ],
    [
      "tolerated",
      node("a", { taints: [{ key: "microvm", value: "", effect: "NoSchedule" }] }),
      spec({ tolerations: [{ key: "microvm" }] }),
      undefined,
      undefined,
    ],
    ["cpu", node("a"), spec(), { cpuMillis: 800, memoryMiB: 0 }, /not enough CPU/],
    ["memory", node("a"), spec(), { cpuMillis: 0, memoryMiB: 1000 }, /not enough memory/],
    ["exactly full", node("a"), spec(), { cpuMillis: 700, memoryMiB: 924 }, undefined],
  ];
  for (const [name, n, s, allocated, reason] of cases) {
    const got = unfitReason(n, s, allocated);
    if (reason) t.regex(got ?? "", reason, name);
    else t.is(got, undefined, name);
  }
});

test("score: bin-pack picks the fullest node, spread the emptiest, PreferNoSchedule is avoided", (t) => {
  const nodes = [
    node("a"),
    node("b"),
    node("c", { taints: [{ key: "x", value: "", effect: "PreferNoSchedule" }] }),
  ];
  const allocations = new Map([
    ["a", { cpuMillis: 600, memoryMiB: 600 }],
    ["b", { cpuMillis: 100, memoryMiB: 100 }],
    ["c", { cpuMillis: 650, memoryMiB: 650 }],
  ]);
  t.is(placeSandbox(spec(), nodes, allocations, "binpack").node?.name, "a");
  t.is(placeSandbox(spec(), nodes, allocations, "spread").node?.name, "b");
  const none = placeSandbox(
    spec({ resources: { cpuMillis: 2000, memoryMiB: 1 } }),
    nodes,
    allocations,
  );
  t.is(none.node, undefined);
  t.regex("reason" in none ? none.reason : "", /no node fits \(3 node\(s\): not enough CPU\)/);
  t.regex(
    (placeSandbox(spec(), [], new Map()) as { reason: string }).reason,
    /no nodes registered/,
  );
});

test("desired node count covers allocation + pending + headroom, within bounds", (t) => {
  const cap = { cpuMillis: 1000, memoryMiB: 1000 };
  t.is(desiredNodeCount({ demand: { cpuMillis: 0, memoryMiB: 0 }, nodeCapacity: cap }), 0);
  t.is(desiredNodeCount({ demand: { cpuMillis: 0, memoryMiB: 0 }, nodeCapacity: cap, min: 1 }), 1);
  t.is(
    desiredNodeCount({
      demand: { cpuMillis: 1000, memoryMiB: 10 },
      nodeCapacity: cap,
      headroom: 0,
    }),
    1,
  );
  t.is(
    desiredNodeCount({
      demand: { cpuMillis: 1000, memoryMiB: 10 },
      nodeCapacity: cap,
      headroom: 0.2,
    }),
    2,
  );
  t.is(
    desiredNodeCount({
      demand: { cpuMillis: 100, memoryMiB: 2500 },
      nodeCapacity: cap,
      headroom: 0,
    }),
    3,
    "memory-bound",
  );
  t.is(
    desiredNodeCount({ demand: { cpuMillis: 50_000, memoryMiB: 10 }, nodeCapacity: cap, max: 8 }),
    8,
  );
});

test("image references: layouts and registry references pass, junk is refused with the fix", (t) => {
  const ok = [
    "oci:/tmp/img:latest",
    "oci:/tmp/img",
    "localhost:5000/team/app:v1.2",
    `reg.example/app@sha256:${"a".repeat(64)}`,
  ];
  const bad = [
    "busybox",
    "oci:relative/path",
    "has space:1",
    "reg.example/app@sha256:short",
    "reg.example/A//b",
  ];
  for (const image of ok)
    t.true(createSandboxBodySchema.safeParse({ image, command: ["x"] }).success, image);
  for (const image of bad) {
    const r = createSandboxBodySchema.safeParse({ image, command: ["x"] });
    t.false(r.success, image);
    t.regex(r.error?.issues[0]?.message ?? "", /oci:\/|must be absolute/, image);
  }
});
