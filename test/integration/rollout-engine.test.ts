/**
 * The rollout state machine (`stacks/rollout-engine.ts`) rolling a release (version and runtime
 * image pinned by digest) through its {@link StackUpdater} seam, with real state files in a temp
 * dir. Pulumi is not installable here (the e2e tests drive the real engine through
 * `AutomationStackUpdater`): the stacks are an in-test {@link StackUpdater} that keeps each
 * stack's `shardworks:runtime` config as Pulumi would after `setConfig`/`removeConfig --path`,
 * and what its last `up` deployed.
 */
import test, { type ExecutionContext } from "ava";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  preflightReleases,
  readState,
  RolloutError,
  runRollout,
  type GateContext,
  type GateResult,
  type HealthGate,
  type Release,
  type StackUpdater,
} from "../../stacks/rollout-engine";
import { parsePlan, type RolloutPlan } from "../../stacks/rollout-plan";

const OLD_IMAGE = `ghcr.io/shardworks/runtime@sha256:${"a".repeat(64)}`;
const NEW_IMAGE = `ghcr.io/shardworks/runtime@sha256:${"b".repeat(64)}`;

/** Platform stacks as config and deployments: the stand-in for Pulumi behind the seam. */
class ConfiguredStacks implements StackUpdater {
  /** Each stack's `shardworks:runtime` config (version, and image when pinned). */
  readonly config = new Map<string, Release>();
  /** What the last `up` of each stack deployed. */
  readonly deployed = new Map<string, Release>();
  /** Every deploy, in order. */
  readonly deploys: Array<[string, Release]> = [];

  constructor(stacks: Record<string, Release>) {
    for (const [stack, release] of Object.entries(stacks)) {
      this.config.set(stack, { ...release });
      this.deployed.set(stack, { ...release });
    }
  }

  currentRelease(stack: string): Promise<Release> {
    const config = this.config.get(stack);
    if (config === undefined) {
      return Promise.reject(new Error(`error: no stack named '${stack}' found`));
    }
    return Promise.resolve({ ...config });
  }

  deploy(stack: string, release: Release): Promise<void> {
    this.deploys.push([stack, { ...release }]);
    // setConfig of the version, setConfig of the image or removeConfig of it.
    this.config.set(stack, { ...release });
    if (release.version.endsWith("-unbuildable")) {
      return Promise.reject(new Error(`error: runtime ${release.version} cannot be deployed`));
    }
    this.deployed.set(stack, { ...release });
    return Promise.resolve();
  }
}

/** The stack runs the version being rolled out; `*-broken` versions never are healthy. */
function versionGate(stacks: ConfiguredStacks): HealthGate {
  return {
    name: "runs-target-version",
    check({ stack, version }: GateContext): Promise<GateResult> {
      const running = stacks.deployed.get(stack)?.version;
      if (running !== version) {
        return Promise.resolve({ ok: false, reason: `runs ${running ?? "nothing"}` });
      }
      if (version.endsWith("-broken")) {
        return Promise.resolve({ ok: false, reason: `${version} is unhealthy` });
      }
      return Promise.resolve({ ok: true });
    },
  };
}

/** Canary `platform-a`, then `platform-b` and `platform-c`; short gates and bakes. */
async function planFor(t: ExecutionContext): Promise<RolloutPlan> {
  const dir = await mkdtemp(join(tmpdir(), "sw-rollout-engine-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const plan = parsePlan({
    waves: [{ stacks: ["platform-a"] }, { name: "rest", stacks: ["platform-b", "platform-c"] }],
    state: join(dir, "state", "rollout.json"),
  });
  // Below the plan's 1s minimum, so the suite stays fast; the state machine takes any ms.
  return { ...plan, bake: 20, gates: { ...plan.gates, timeout: 50, interval: 10 } };
}

/** a and b run pods (pinned image); c is a stack where nothing runs (no image). */
function threeStacks(): ConfiguredStacks {
  return new ConfiguredStacks({
    "platform-a": { version: "0.1.0", image: OLD_IMAGE },
    "platform-b": { version: "0.1.0", image: OLD_IMAGE },
    "platform-c": { version: "0.1.0" },
  });
}

const quiet = () => undefined;

test("pre-flight: stacks that pin an image are refused without --image, one line each", async (t) => {
  const plan = await planFor(t);
  const stacks = threeStacks();
  const error = await t.throwsAsync(preflightReleases(plan, { version: "0.2.0" }, stacks), {
    instanceOf: RolloutError,
  });
  t.deepEqual(error.message.split("\n"), [
    `stack platform-a pins the runtime image (${OLD_IMAGE}), so a new version alone would keep running it; pass --image <name>@sha256:<64 hex> (\`npm run images -- build runtime\` prints it)`,
    `stack platform-b pins the runtime image (${OLD_IMAGE}), so a new version alone would keep running it; pass --image <name>@sha256:<64 hex> (\`npm run images -- build runtime\` prints it)`,
  ]);
  t.deepEqual(stacks.deploys, [], "nothing was deployed");

  // Unreadable stacks are listed with them.
  const withMissing = {
    ...plan,
    waves: [{ name: "canary", stacks: ["platform-a", "platform-x"] }],
  };
  const missing = await t.throwsAsync(
    preflightReleases(withMissing, { version: "0.2.0" }, stacks),
    { instanceOf: RolloutError },
  );
  t.is(missing.message.split("\n").length, 2);
  t.regex(missing.message, /^stack platform-x: error: no stack named 'platform-x' found$/m);

  // With --image every stack may take the release; the current releases come back.
  const current = await preflightReleases(plan, { version: "0.2.0", image: NEW_IMAGE }, stacks);
  t.deepEqual(Object.fromEntries(current), {
    "platform-a": { version: "0.1.0", image: OLD_IMAGE },
    "platform-b": { version: "0.1.0", image: OLD_IMAGE },
    "platform-c": { version: "0.1.0" },
  });
  // A stack without an image takes a version alone.
  const unpinned = { ...plan, waves: [{ name: "canary", stacks: ["platform-c"] }] };
  t.deepEqual(Object.fromEntries(await preflightReleases(unpinned, { version: "0.2.0" }, stacks)), {
    "platform-c": { version: "0.1.0" },
  });
});

test("the engine refuses too: a stack pinning an image is never given a version alone", async (t) => {
  const plan = await planFor(t);
  // Pinned only after a pre-flight would have passed: platform-b is found pinned in wave 2.
  const stacks = new ConfiguredStacks({
    "platform-a": { version: "0.1.0" },
    "platform-b": { version: "0.1.0", image: OLD_IMAGE },
    "platform-c": { version: "0.1.0" },
  });
  const state = await runRollout({
    plan,
    release: { version: "0.2.0" },
    updater: stacks,
    gates: [versionGate(stacks)],
    progress: quiet,
  });
  t.is(state.status, "failed");
  t.regex(state.failure ?? "", /^wave "rest": stack platform-b pins the runtime image .*--image/);
  t.deepEqual(stacks.config.get("platform-b"), { version: "0.1.0", image: OLD_IMAGE });
  t.false(stacks.deploys.some(([stack]) => stack === "platform-b"));
});

test("with --image every stack is configured and deployed with version and image", async (t) => {
  const plan = await planFor(t);
  const stacks = threeStacks();
  const lines: string[] = [];
  const release = { version: "0.2.0", image: NEW_IMAGE };
  const state = await runRollout({
    plan,
    release,
    updater: stacks,
    gates: [versionGate(stacks)],
    progress: (line) => lines.push(line),
  });
  t.is(state.status, "succeeded");
  t.deepEqual(stacks.deploys, [
    ["platform-a", release],
    ["platform-b", release],
    ["platform-c", release],
  ]);
  for (const stack of ["platform-a", "platform-b", "platform-c"]) {
    t.deepEqual(stacks.config.get(stack), release);
    t.deepEqual(stacks.deployed.get(stack), release);
  }
  // The state records both, before and after.
  t.deepEqual(state.stacks["platform-a"], {
    wave: 0,
    from: { version: "0.1.0", image: OLD_IMAGE },
    to: release,
    phase: "healthy",
  });
  t.deepEqual(state.stacks["platform-c"]?.from, { version: "0.1.0" });
  t.is(state.image, NEW_IMAGE);
  t.deepEqual(await readState(plan.state), state);
  // Progress shows the digest, shortened.
  t.true(
    lines.includes(
      "[canary] platform-a: 0.1.0 (ghcr.io/shardworks/runtime@sha256:aaaaaaaaaaaa…) -> 0.2.0 (ghcr.io/shardworks/runtime@sha256:bbbbbbbbbbbb…): pulumi up",
    ),
    lines.join("\n"),
  );
  t.true(
    lines.includes(
      "[rest] platform-c: 0.1.0 -> 0.2.0 (ghcr.io/shardworks/runtime@sha256:bbbbbbbbbbbb…): pulumi up",
    ),
  );
});

test("a failed wave rolls back version AND image, and the absence of an image", async (t) => {
  const plan = await planFor(t);
  // Both kinds of stack in the canary: one pinned, one not.
  const canaryPlan = {
    ...plan,
    waves: [
      { name: "canary", stacks: ["platform-a", "platform-c"] },
      { name: "rest", stacks: ["platform-b"] },
    ],
  };
  const stacks = threeStacks();
  const lines: string[] = [];
  const state = await runRollout({
    plan: canaryPlan,
    release: { version: "0.3.0-broken", image: NEW_IMAGE },
    updater: stacks,
    gates: [versionGate(stacks)],
    progress: (line) => lines.push(line),
  });
  t.is(state.status, "failed");
  t.regex(state.failure ?? "", /^wave "canary": platform-a: gate runs-target-version/);
  t.deepEqual(stacks.config.get("platform-a"), { version: "0.1.0", image: OLD_IMAGE });
  t.deepEqual(stacks.deployed.get("platform-a"), { version: "0.1.0", image: OLD_IMAGE });
  // It had no image before: the rollback leaves it none, not the new one.
  t.deepEqual(stacks.config.get("platform-c"), { version: "0.1.0" });
  t.deepEqual(stacks.deployed.get("platform-c"), { version: "0.1.0" });
  t.deepEqual(stacks.deploys.slice(2), [
    ["platform-a", { version: "0.1.0", image: OLD_IMAGE }],
    ["platform-c", { version: "0.1.0" }],
  ]);
  t.deepEqual(stacks.config.get("platform-b"), { version: "0.1.0", image: OLD_IMAGE });
  t.false(stacks.deploys.some(([stack]) => stack === "platform-b"));
  t.true(
    lines.includes(
      "[canary] platform-a: rolled back to 0.1.0 (ghcr.io/shardworks/runtime@sha256:aaaaaaaaaaaa…)",
    ),
  );

  // An `up` that fails is rolled back the same way.
  const again = threeStacks();
  const unbuildable = await runRollout({
    plan: { ...plan, state: `${plan.state}.2` },
    release: { version: "0.3.0-unbuildable", image: NEW_IMAGE },
    updater: again,
    gates: [versionGate(again)],
    progress: quiet,
  });
  t.is(unbuildable.status, "failed");
  t.deepEqual(again.config.get("platform-a"), { version: "0.1.0", image: OLD_IMAGE });
});

test("--resume restores the release the stack had before the interrupted run", async (t) => {
  const plan = await planFor(t);
  const stacks = threeStacks();
  const abort = new AbortController();
  const first = await runRollout({
    plan,
    release: { version: "0.2.0", image: NEW_IMAGE },
    updater: stacks,
    gates: [versionGate(stacks)],
    signal: abort.signal,
    progress: (line) => {
      if (line.startsWith("[canary] baking")) abort.abort();
    },
  });
  t.is(first.status, "interrupted");
  t.deepEqual(stacks.config.get("platform-a"), { version: "0.2.0", image: NEW_IMAGE });

  // Another image, or none, is not this rollout.
  const noImage = await t.throwsAsync(
    runRollout({ plan, release: { version: "0.2.0" }, updater: stacks, gates: [], resume: true }),
    { instanceOf: RolloutError },
  );
  t.is(
    noImage.message,
    `--resume: ${plan.state} is a rollout of 0.2.0 (ghcr.io/shardworks/runtime@sha256:bbbbbbbbbbbb…), not 0.2.0; pass --version 0.2.0 --image ${NEW_IMAGE}`,
  );

  // Resumed: the canary's re-check fails, and the rollback restores what it had before the first
  // run (read back from the state file), not what it has now.
  const resumed = await runRollout({
    plan,
    release: { version: "0.2.0", image: NEW_IMAGE },
    updater: stacks,
    gates: [{ name: "always-failing", check: () => Promise.resolve({ ok: false, reason: "no" }) }],
    resume: true,
    progress: quiet,
  });
  t.is(resumed.status, "failed");
  t.deepEqual(stacks.config.get("platform-a"), { version: "0.1.0", image: OLD_IMAGE });
  t.deepEqual(stacks.deployed.get("platform-a"), { version: "0.1.0", image: OLD_IMAGE });
});

/** A state file as rollouts wrote it before releases: `from` and `to` are plain versions. */
async function writeOldState(plan: RolloutPlan, text: object): Promise<void> {
  await mkdir(dirname(plan.state), { recursive: true });
  await writeFile(plan.state, JSON.stringify(text, null, 2));
}

test("an old state file with plain version strings still resumes", async (t) => {
  const plan = await planFor(t);
  const stacks = new ConfiguredStacks({
    "platform-a": { version: "0.2.0" }, // the old rollout updated it
    "platform-b": { version: "0.1.0" },
    "platform-c": { version: "0.1.0" },
  });
  await writeOldState(plan, {
    version: "0.2.0",
    status: "interrupted",
    waves: [
      { name: "canary", stacks: ["platform-a"], phase: "gating" },
      { name: "rest", stacks: ["platform-b", "platform-c"], phase: "pending" },
    ],
    stacks: {
      "platform-a": { wave: 0, from: "0.1.0", to: "0.2.0", phase: "updated" },
      "platform-b": { wave: 1, to: "0.2.0", phase: "pending" },
      "platform-c": { wave: 1, to: "0.2.0", phase: "pending" },
    },
  });
  const saved = await readState(plan.state);
  t.is(saved?.stacks["platform-a"]?.from, "0.1.0");
  t.deepEqual(saved?.stacks["platform-a"]?.to, { version: "0.2.0" });

  const resumed = await runRollout({
    plan,
    release: { version: "0.2.0" },
    updater: stacks,
    gates: [versionGate(stacks)],
    resume: true,
    progress: quiet,
  });
  t.is(resumed.status, "succeeded");
  // The canary was not deployed again; the rest were.
  t.deepEqual(
    stacks.deploys.map(([stack]) => stack),
    ["platform-b", "platform-c"],
  );
  t.deepEqual(resumed.stacks["platform-a"], {
    wave: 0,
    from: { version: "0.1.0" },
    to: { version: "0.2.0" },
    phase: "healthy",
  });
  const rewritten = JSON.parse(await readFile(plan.state, "utf8")) as {
    stacks: Record<string, { from?: unknown }>;
  };
  t.deepEqual(rewritten.stacks["platform-a"]?.from, { version: "0.1.0" });
});

test("an old state file's rollback keeps the image a version-only rollout never changed", async (t) => {
  const plan = await planFor(t);
  // The old rollout set platform-a's version only; its image stayed pinned.
  const stacks = new ConfiguredStacks({
    "platform-a": { version: "0.3.0", image: OLD_IMAGE },
    "platform-b": { version: "0.1.0", image: OLD_IMAGE },
    "platform-c": { version: "0.1.0" },
  });
  await writeOldState(plan, {
    version: "0.3.0",
    status: "interrupted",
    waves: [
      { name: "canary", stacks: ["platform-a"], phase: "rolling-back" },
      { name: "rest", stacks: ["platform-b", "platform-c"], phase: "pending" },
    ],
    stacks: {
      "platform-a": { wave: 0, from: "0.1.0", to: "0.3.0", phase: "rolling-back" },
      "platform-b": { wave: 1, to: "0.3.0", phase: "pending" },
      "platform-c": { wave: 1, to: "0.3.0", phase: "pending" },
    },
    failure: 'wave "canary": platform-a: gate scheduler-healthz did not pass within 5m: 503',
  });
  // What `npm run rollout -- --resume --version 0.3.0` runs first: the saved rollout takes no
  // --image (the state has none), so the pre-flight must not ask for one.
  const current = await preflightReleases(plan, { version: "0.3.0" }, stacks, undefined, {
    resume: true,
  });
  t.deepEqual(current.get("platform-a"), { version: "0.3.0", image: OLD_IMAGE });
  const resumed = await runRollout({
    plan,
    release: { version: "0.3.0" },
    updater: stacks,
    gates: [],
    resume: true,
    progress: quiet,
  });
  t.is(resumed.status, "failed");
  t.deepEqual(stacks.deploys, [["platform-a", { version: "0.1.0", image: OLD_IMAGE }]]);
  t.deepEqual(stacks.config.get("platform-a"), { version: "0.1.0", image: OLD_IMAGE });
  t.deepEqual(resumed.stacks["platform-a"]?.from, { version: "0.1.0", image: OLD_IMAGE });
});

test("a state file that is not JSON (a hand edit gone wrong) is named, with what to do", async (t) => {
  const plan = await planFor(t);
  await mkdir(dirname(plan.state), { recursive: true });
  await writeFile(plan.state, '{ "version": "0.2.0", ');
  const error = await t.throwsAsync(readState(plan.state), { instanceOf: RolloutError });
  t.true(error.message.startsWith(`state file ${plan.state} is not JSON (`), error.message);
  t.regex(error.message, /fix it or move it away to start afresh$/);
});
