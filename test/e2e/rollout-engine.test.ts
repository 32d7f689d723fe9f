/**
 * The rollout state machine (`stacks/rollout-engine.ts`) driving the REAL Pulumi engine through the
 * Automation API (`AutomationStackUpdater`, file backend in a temp dir), on three stacks of a small
 * program (`fixtures/rollout-program.ts`, run by the real language host) that exports the runtime
 * version it was configured with. The health gate is a
 * real in-test gate: it reads the deployed stack's outputs and fails on demand for any version
 * ending in `-broken` (the testbed's mapping of a broken runtime version).
 *
 * Not covered here: the scheduler-API gates against running runtime processes, and the three local
 * Kubernetes clusters (see docs/readme/rollout.md).
 */
import test, { type ExecutionContext } from "ava";
import { LocalWorkspace, PulumiCommand } from "@pulumi/pulumi/automation";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { testbedPath } from "../../scripts/pulumi-env";
import { ensureTools } from "../../scripts/tools";
import { linkProject } from "./project";
import { AutomationStackUpdater } from "../../stacks/rollout";
import {
  preflightReleases,
  RolloutError,
  readState,
  runRollout,
  type GateContext,
  type GateResult,
  type HealthGate,
} from "../../stacks/rollout-engine";
import { parsePlan, type RolloutPlan } from "../../stacks/rollout-plan";

const PROJECT = "rollout-test";
const STACKS = ["platform-a", "platform-b", "platform-c"] as const;

interface Project {
  readonly dir: string;
  readonly updater: AutomationStackUpdater;
  readonly plan: RolloutPlan;
  readonly opts: {
    workDir: string;
    envVars: Record<string, string>;
    pulumiCommand: PulumiCommand;
  };
  /** Deployed runtimeVersion output (undefined before the first up). */
  deployed(stack: string): Promise<string | undefined>;
  /** Number of `up`s the stack has had. */
  updates(stack: string): Promise<number>;
  configured(stack: string): Promise<string>;
  /** Configured `shardworks:runtime.image` (undefined when the stack has none). */
  configuredImage(stack: string): Promise<string | undefined>;
  /** Deployed runtimeImage output ("" when the stack was deployed without an image). */
  deployedImage(stack: string): Promise<string | undefined>;
  /** Set `shardworks:runtime.image` as a person would (`pulumi config set --path`). */
  pinImage(stack: string, image: string): Promise<void>;
}

/** A fresh file backend with three stacks configured at 0.1.0 and never deployed. */
async function project(t: ExecutionContext): Promise<Project> {
  const tools = await ensureTools();
  const dir = await mkdtemp(join(tmpdir(), "shardworks-rollout-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // The program (fixtures/rollout-program.ts) is run by the real language host.
  await linkProject(dir, PROJECT, join(__dirname, "fixtures", "rollout-program.ts"));
  const envVars = {
    PULUMI_BACKEND_URL: `file://${join(dir, "backend")}`,
    PULUMI_CONFIG_PASSPHRASE: randomBytes(16).toString("hex"),
    PULUMI_HOME: join(dir, "pulumi-home"),
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_NODEJS_TRANSPILE_ONLY: "true",
    PATH: testbedPath(tools),
  };
  await import("node:fs/promises").then((fs) => fs.mkdir(join(dir, "backend")));
  const pulumiCommand = await PulumiCommand.get({ root: dirname(dirname(tools.pulumi)) });
  const opts = { workDir: dir, envVars, pulumiCommand };
  for (const name of STACKS) {
    const stack = await LocalWorkspace.createStack({ stackName: name, workDir: dir }, opts);
    await stack.setConfig("shardworks:runtime.version", { value: "0.1.0" }, true);
  }
  const select = (name: string) =>
    LocalWorkspace.selectStack({ stackName: name, workDir: dir }, opts);
  const plan = parsePlan({
    waves: [{ stacks: ["platform-a"] }, { name: "rest", stacks: ["platform-b", "platform-c"] }],
    gates: { timeout: "4s", interval: "1s", syntheticSandboxSlo: "2s" },
    bake: "2s",
    state: join(dir, "state", "rollout.json"),
  });
  return {
    dir,
    plan,
    opts,
    updater: new AutomationStackUpdater({
      workDir: dir,
      envVars,
      pulumiCommand,
    }),
    async deployed(name) {
      const value: unknown = (await (await select(name)).outputs()).runtimeVersion?.value;
      return typeof value === "string" ? value : undefined;
    },
    async updates(name) {
      return (await (await select(name)).history()).filter((u) => u.kind === "update").length;
    },
    async configured(name) {
      return (await (await select(name)).getConfig("shardworks:runtime.version", true)).value;
    },
    async configuredImage(name) {
      const runtime = (await (await select(name)).getAllConfig())["shardworks:runtime"]?.value;
      const image: unknown = runtime === undefined ? undefined : JSON.parse(runtime).image;
      return typeof image === "string" ? image : undefined;
    },
    async deployedImage(name) {
      const value: unknown = (await (await select(name)).outputs()).runtimeImage?.value;
      return typeof value === "string" ? value : undefined;
    },
    async pinImage(name, image) {
      await (await select(name)).setConfig("shardworks:runtime.image", { value: image }, true);
    },
  };
}

/** The real in-test gate: the stack must run the target version, and `*-broken` never is healthy. */
function versionGate(p: Project, checked: string[]): HealthGate {
  return {
    name: "runs-target-version",
    async check({ stack, version }: GateContext): Promise<GateResult> {
      checked.push(stack);
      const running = await p.deployed(stack);
      if (running !== version) return { ok: false, reason: `runs ${running ?? "nothing"}` };
      if (version.endsWith("-broken")) return { ok: false, reason: `${version} is unhealthy` };
      return { ok: true };
    },
  };
}

test.serial("a good version goes canary -> rest and ends healthy on every stack", async (t) => {
  const p = await project(t);
  const lines: string[] = [];
  const checked: string[] = [];
  const state = await runRollout({
    plan: p.plan,
    release: { version: "0.2.0" },
    updater: p.updater,
    gates: [versionGate(p, checked)],
    progress: (line) => lines.push(line),
  });
  t.is(state.status, "succeeded");
  for (const stack of STACKS) {
    t.is(await p.deployed(stack), "0.2.0");
    t.is(await p.configured(stack), "0.2.0");
    t.is(await p.updates(stack), 1);
    t.deepEqual(state.stacks[stack], {
      wave: stack === "platform-a" ? 0 : 1,
      from: { version: "0.1.0" },
      to: { version: "0.2.0" },
      phase: "healthy",
    });
  }
  t.deepEqual(
    state.waves.map((w) => [w.name, w.phase]),
    [
      ["canary", "done"],
      ["rest", "done"],
    ],
  );
  // The canary is gated (before and after its bake) before the rest is touched.
  t.true(
    lines.indexOf("[canary] done") < lines.indexOf("[rest] platform-b: 0.1.0 -> 0.2.0: pulumi up"),
  );
  t.is(lines.at(-1), "rollout of 0.2.0 succeeded on 3 stack(s)");
  t.deepEqual(checked, [
    "platform-a",
    "platform-a",
    "platform-b",
    "platform-c",
    "platform-b",
    "platform-c",
  ]);
  t.deepEqual(await readState(p.plan.state), state);
});

test.serial(
  "a broken version stops after the canary and rolls it back; the rest never change",
  async (t) => {
    const p = await project(t);
    const lines: string[] = [];
    const state = await runRollout({
      plan: p.plan,
      release: { version: "0.0.0-broken" },
      updater: p.updater,
      gates: [versionGate(p, [])],
      progress: (line) => lines.push(line),
    });
    t.is(state.status, "failed");
    t.is(
      state.failure,
      'wave "canary": platform-a: gate runs-target-version did not pass within 4s: 0.0.0-broken is unhealthy',
    );
    t.is(await p.deployed("platform-a"), "0.1.0");
    t.is(await p.configured("platform-a"), "0.1.0");
    t.is(await p.updates("platform-a"), 2); // the broken up, then the rollback
    t.is(state.stacks["platform-a"]?.phase, "rolled-back");
    for (const stack of ["platform-b", "platform-c"]) {
      t.is(await p.updates(stack), 0);
      t.is(await p.configured(stack), "0.1.0");
      t.is(state.stacks[stack]?.phase, "pending");
    }
    t.deepEqual(
      state.waves.map((w) => w.phase),
      ["rolled-back", "pending"],
    );
    t.is(
      lines.at(-1),
      'rollout of 0.0.0-broken FAILED in wave "canary"; later waves were not touched',
    );
    // A failed rollout is not resumed; the message says what to do.
    const error = await t.throwsAsync(
      runRollout({
        plan: p.plan,
        release: { version: "0.0.0-broken" },
        updater: p.updater,
        gates: [],
        resume: true,
        progress: () => undefined,
      }),
      { instanceOf: RolloutError },
    );
    t.regex(error.message, /failed and was rolled back/);
  },
);

test.serial("a version whose pulumi up fails is rolled back the same way", async (t) => {
  const p = await project(t);
  const state = await runRollout({
    plan: p.plan,
    release: { version: "0.3.0-unbuildable" },
    updater: p.updater,
    gates: [versionGate(p, [])],
    progress: () => undefined,
  });
  t.is(state.status, "failed");
  t.regex(
    state.failure ?? "",
    /^wave "canary": platform-a: update failed: .*runtime 0\.3\.0-unbuildable cannot be deployed/,
  );
  t.notRegex(state.failure ?? "", /\n\s+at .*:\d+:\d+/, "no stack trace");
  t.is(await p.configured("platform-a"), "0.1.0");
  t.is(await p.deployed("platform-a"), "0.1.0");
  t.is(await p.updates("platform-b"), 0);
});

test.serial("an interrupted rollout resumes where it stopped", async (t) => {
  const p = await project(t);
  const abort = new AbortController();
  const first = await runRollout({
    plan: p.plan,
    release: { version: "0.2.0" },
    updater: p.updater,
    gates: [versionGate(p, [])],
    signal: abort.signal,
    // Interrupted while the canary bakes (as Ctrl-C would).
    progress: (line) => {
      if (line.startsWith("[canary] baking")) abort.abort();
    },
  });
  t.is(first.status, "interrupted");
  t.deepEqual(
    first.waves.map((w) => w.phase),
    ["baking", "pending"],
  );
  t.is(await p.updates("platform-b"), 0);

  // Resuming with another version or without --resume is refused with what to do.
  const other = await t.throwsAsync(
    runRollout({
      plan: p.plan,
      release: { version: "0.9.0" },
      updater: p.updater,
      gates: [],
      resume: true,
    }),
    { instanceOf: RolloutError },
  );
  t.is(
    other.message,
    `--resume: ${p.plan.state} is a rollout of 0.2.0, not 0.9.0; pass --version 0.2.0`,
  );
  await t.throwsAsync(
    runRollout({ plan: p.plan, release: { version: "0.2.0" }, updater: p.updater, gates: [] }),
    { instanceOf: RolloutError, message: /pass --resume to continue it/ },
  );

  const lines: string[] = [];
  const resumed = await runRollout({
    plan: p.plan,
    release: { version: "0.2.0" },
    updater: p.updater,
    gates: [versionGate(p, [])],
    resume: true,
    progress: (line) => lines.push(line),
  });
  t.is(resumed.status, "succeeded");
  t.is(await p.updates("platform-a"), 1); // the canary was not deployed again
  for (const stack of STACKS) t.is(await p.deployed(stack), "0.2.0");
  t.false(lines.some((l) => l.startsWith("[canary] updating")));
  t.true(lines.some((l) => l.startsWith("[canary] baking")));
  t.true(JSON.parse(await readFile(p.plan.state, "utf8")).status === "succeeded");
});

test.serial(
  "Ctrl-C during a pulumi up cancels it: the rollout is interrupted, not rolled back",
  async (t) => {
    const p = await project(t);
    const abort = new AbortController();
    const first = await runRollout({
      plan: p.plan,
      release: { version: "0.2.0" },
      updater: p.updater,
      gates: [versionGate(p, [])],
      signal: abort.signal,
      progress: (line) => {
        // As Ctrl-C would, while the engine runs the canary's update.
        if (line.endsWith("0.1.0 -> 0.2.0: pulumi up")) setTimeout(() => abort.abort(), 300);
      },
    });
    t.is(first.status, "interrupted");
    t.is(first.failure, undefined, "not a failure: nothing is rolled back");
    t.deepEqual(
      first.waves.map((w) => w.phase),
      ["updating", "pending"],
    );
    t.is(first.stacks["platform-a"]?.phase, "updating");
    t.deepEqual(first.stacks["platform-a"]?.from, { version: "0.1.0" });
    t.is(await p.updates("platform-b"), 0);

    const resumed = await runRollout({
      plan: p.plan,
      release: { version: "0.2.0" },
      updater: p.updater,
      gates: [versionGate(p, [])],
      resume: true,
      progress: () => undefined,
    });
    t.is(resumed.status, "succeeded");
    for (const stack of STACKS) t.is(await p.deployed(stack), "0.2.0");
  },
);

test.serial(
  "a release with an image: refused without one, set with the version, rolled back with it",
  async (t) => {
    const p = await project(t);
    const oldImage = `ghcr.io/shardworks/runtime@sha256:${"a".repeat(64)}`;
    const newImage = `ghcr.io/shardworks/runtime@sha256:${"b".repeat(64)}`;
    // platform-a runs pods (pins its image); platform-b does not; both are the canary.
    await p.pinImage("platform-a", oldImage);
    const plan: RolloutPlan = {
      ...p.plan,
      waves: [
        { name: "canary", stacks: ["platform-a", "platform-b"] },
        { name: "rest", stacks: ["platform-c"] },
      ],
    };
    // The pre-flight reads the real config: the pinned stack needs --image.
    const refused = await t.throwsAsync(preflightReleases(plan, { version: "0.2.0" }, p.updater), {
      instanceOf: RolloutError,
    });
    t.regex(refused.message, /^stack platform-a pins the runtime image \(.+\).*pass --image /);
    t.notRegex(refused.message, /platform-[bc]/);

    const broken = await runRollout({
      plan,
      release: { version: "0.0.0-broken", image: newImage },
      updater: p.updater,
      gates: [versionGate(p, [])],
      progress: () => undefined,
    });
    t.is(broken.status, "failed");
    t.is(await p.configured("platform-a"), "0.1.0");
    t.is(await p.configuredImage("platform-a"), oldImage);
    t.is(await p.deployedImage("platform-a"), oldImage);
    // It had no image: the rollback removes the new one again.
    t.is(await p.configured("platform-b"), "0.1.0");
    t.is(await p.configuredImage("platform-b"), undefined);
    t.is(await p.deployedImage("platform-b"), "");
    t.is(await p.updates("platform-c"), 0);

    const good = await runRollout({
      plan: { ...plan, state: `${plan.state}.good` },
      release: { version: "0.2.0", image: newImage },
      updater: p.updater,
      gates: [versionGate(p, [])],
      progress: () => undefined,
    });
    t.is(good.status, "succeeded");
    for (const stack of STACKS) {
      t.is(await p.configured(stack), "0.2.0");
      t.is(await p.configuredImage(stack), newImage);
      t.is(await p.deployedImage(stack), newImage);
    }
    t.deepEqual(good.stacks["platform-a"]?.from, { version: "0.1.0", image: oldImage });
    t.deepEqual(good.stacks["platform-c"]?.from, { version: "0.1.0" });
  },
);
