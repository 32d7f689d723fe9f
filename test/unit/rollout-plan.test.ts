import test from "ava";
import { join } from "node:path";
import { describePlan } from "../../stacks/rollout-engine";
import { RolloutPlanError, loadPlan, parsePlan, targetOf } from "../../stacks/rollout-plan";

const valid = { waves: [{ stacks: ["platform-a"] }, { stacks: ["platform-b"] }], state: "s.json" };

test("defaults: wave names, gates, bake", (t) => {
  const plan = parsePlan(valid);
  t.deepEqual(plan.waves, [
    { name: "canary", stacks: ["platform-a"] },
    { name: "wave-2", stacks: ["platform-b"] },
  ]);
  t.deepEqual(plan.gates, {
    timeout: 300_000,
    interval: 2_000,
    syntheticSandboxSlo: 30_000,
    xdsNodeId: "shardworks-gateway",
  });
  t.is(plan.bake, 600_000);
  t.deepEqual(targetOf(plan, "platform-a"), { nodeAgents: 1 });
});

test("targets: per-stack addresses and counts override the outputs; --dry-run shows them", (t) => {
  const plan = parsePlan({
    ...valid,
    gates: { xdsNodeId: "edge" },
    targets: {
      "platform-b": { schedulerUrl: "http://127.0.0.1:7070", nodeAgents: 3, xdsClients: 2 },
    },
  });
  t.deepEqual(targetOf(plan, "platform-b"), {
    schedulerUrl: "http://127.0.0.1:7070",
    nodeAgents: 3,
    xdsClients: 2,
  });
  t.deepEqual(targetOf(plan, "platform-a"), { nodeAgents: 1 });
  const lines = describePlan(
    plan,
    { version: "0.2.0" },
    new Map([["platform-a", { version: "0.1.0" }]]),
  );
  t.true(lines.includes("    platform-a: 0.1.0 -> 0.2.0"));
  t.true(
    lines.includes(
      "    platform-b: ? -> 0.2.0 (scheduler http://127.0.0.1:7070, 3 node agent(s), 2 xDS client(s))",
    ),
  );
  t.true(lines.some((l) => l.endsWith('xDS clients "edge" must ACK')));
});

test("--dry-run shows from -> to with the image digests, shortened", (t) => {
  const plan = parsePlan(valid);
  const old = `ghcr.io/shardworks/runtime@sha256:${"a".repeat(64)}`;
  const next = `registry.example.com/platform/runtime@sha256:${"0123456789abcdef".repeat(4)}`;
  const lines = describePlan(
    plan,
    { version: "0.2.0", image: next },
    new Map([
      ["platform-a", { version: "0.1.0", image: old }],
      ["platform-b", { version: "0.1.0" }],
    ]),
  );
  t.is(lines[0], `rollout of runtime version 0.2.0 with image ${next}, 2 wave(s):`);
  t.deepEqual(lines.slice(1, 5), [
    '  wave 1 "canary" (canary):',
    "    platform-a: 0.1.0 (ghcr.io/shardworks/runtime@sha256:aaaaaaaaaaaa…) -> 0.2.0 (registry.example.com/platform/runtime@sha256:0123456789ab…)",
    '  wave 2 "wave-2":',
    "    platform-b: 0.1.0 -> 0.2.0 (registry.example.com/platform/runtime@sha256:0123456789ab…)",
  ]);
});

test("the example plan stacks/rollout.local.yaml is valid; state is next to it", async (t) => {
  const file = join(__dirname, "..", "..", "stacks", "rollout.local.yaml");
  const plan = await loadPlan(file);
  t.deepEqual(
    plan.waves.map((w) => w.name),
    ["canary", "rest"],
  );
  t.is(plan.bake, 30_000);
  t.is(plan.state, join(__dirname, "..", "..", "stacks", ".rollout", "local.json"));
});

const invalid: Array<[string, unknown, string[]]> = [
  ["no waves", { waves: [], state: "s" }, ["waves: needs at least one wave (the canary)"]],
  ["missing state", { waves: [{ stacks: ["a"] }] }, ["state: is required (string)"]],
  [
    "empty wave",
    { waves: [{ stacks: [] }], state: "s" },
    ["waves[0].stacks: needs at least one stack"],
  ],
  [
    "bad stack name",
    { waves: [{ stacks: ["a b"] }], state: "s" },
    [
      'waves[0].stacks[0]: must be a stack name, e.g. "platform-local" or "organization/shardworks/platform-a"',
    ],
  ],
  [
    "stack in two waves",
    { waves: [{ stacks: ["a"] }, { stacks: ["b", "a"] }], state: "s" },
    ['waves[1].stacks[1]: "a" is already in waves[0]; a stack is updated once'],
  ],
  [
    "duplicate wave name",
    {
      waves: [
        { name: "x", stacks: ["a"] },
        { name: "x", stacks: ["b"] },
      ],
      state: "s",
    },
    ['waves[1].name: "x" is used by another wave'],
  ],
  [
    "bad duration",
    { ...valid, bake: "ten minutes" },
    ['bake: "ten minutes" is not a duration; use e.g. "30s", "5m" or "1h30m"'],
  ],
  [
    "too long",
    { ...valid, gates: { timeout: "2d" } },
    ['gates.timeout: "2d" is longer than the maximum of 24h'],
  ],
  [
    "unknown key",
    { ...valid, gates: { slo: "30s" } },
    ["gates.slo: unknown key; allowed keys are described in docs/readme/rollout.md"],
  ],
  ["wrong type", { waves: "canary", state: "s" }, ['waves: expected array, got "canary"']],
  [
    "target of a stack in no wave",
    { ...valid, targets: { "platform-z": { nodeAgents: 2 } } },
    ['targets.platform-z: "platform-z" is in no wave; list it in waves or remove it'],
  ],
  [
    "bad target addresses and counts",
    {
      ...valid,
      targets: {
        "platform-a": { schedulerUrl: "ftp://x", nodeAgents: 0 },
        "platform-b": { xdsClients: 1.5 },
      },
    },
    [
      'targets.platform-a.schedulerUrl: must be an http(s) URL, e.g. "http://127.0.0.1:7070"',
      "targets.platform-a.nodeAgents: must be at least 1",
      "targets.platform-b.xdsClients: expected int, got 1.5",
    ],
  ],
  [
    "unknown target key",
    { ...valid, targets: { "platform-a": { nodes: 2 } } },
    ["targets.platform-a.nodes: unknown key; allowed keys are described in docs/readme/rollout.md"],
  ],
  [
    "several problems at once",
    { waves: [{ name: "Canary", stacks: ["a"] }], state: "", bake: "5x" },
    [
      'waves[0].name: must be a lowercase name like "canary" or "wave-2"',
      'bake: "5x" is not a duration; use e.g. "30s", "5m" or "1h30m"',
      'state: must be a file path, e.g. ".rollout/local.json"',
    ],
  ],
];

for (const [name, raw, problems] of invalid) {
  test(`invalid plan: ${name}`, (t) => {
    const error = t.throws(() => parsePlan(raw), { instanceOf: RolloutPlanError });
    t.deepEqual([...error.problems].sort(), [...problems].sort());
  });
}

test("loadPlan: a missing file and bad YAML are named", async (t) => {
  const missing = await t.throwsAsync(loadPlan("/nonexistent/rollout.x.yaml"), {
    instanceOf: RolloutPlanError,
  });
  t.regex(missing.message, /^cannot read plan file \/nonexistent\/rollout\.x\.yaml: ENOENT/);
});
