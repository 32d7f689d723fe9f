/**
 * The policy pack in the real engine (the Pulumi CLI built by `npm run tools`) against a local
 * cluster: a shard stack that breaks mandatory rules must be refused by `preview`, a well-fenced one
 * passes. Twice, both on a project directory whose program the real `pulumi-language-nodejs` runs
 * with the real `pulumi-resource-kubernetes`:
 *
 * - Automation API, `preview({ policyPacks: ["policy"] })`;
 * - the CLI, `pulumi preview --policy-pack policy`.
 *
 * Policy runs put `tools.policyBinDir` first on PATH: the 3.248 engine starts a Node.js pack only
 * through the language host's RunPlugin, which the real host served here (v3.68.0) lacks; the
 * testbed's policy host there implements RunPlugin (`run-policy-pack`) and forwards every other
 * call to the real host.
 *
 * The refused stack is a small program of its own (`fixtures/policy-shard.ts`), not our shard
 * program: the config schema and the components make every valid shard config compliant
 * (test/unit/policy-components.test.ts), so only hand-written resources can break the rules.
 */
import test from "ava";
import { LocalWorkspace } from "@pulumi/pulumi/automation";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { startCluster, stopCluster, type Cluster } from "../../scripts/cluster";
import { testbedPulumi, type TestbedPulumi } from "../../scripts/pulumi-env";
import { ensureTools, type Tools } from "../../scripts/tools";
import { linkProject } from "./project";

const repoRoot = resolve(__dirname, "..", "..");
const POLICY_DIR = join(repoRoot, "policy");
const execFileAsync = promisify(execFile);

/** What a refusal of `fixtures/policy-shard.ts`'s bad shard must say, rule by rule. */
const REFUSALS: readonly RegExp[] = [
  /shard-namespace-fences/,
  /shard namespace "shard-bad" has no ResourceQuota/,
  /shard namespace "shard-bad" has no default-deny NetworkPolicy/,
  /shard-ttl-at-most-7-days/,
  /is more than 7 days ahead; the longest shard TTL is 7 days/,
  /no-privileged-workloads/,
  /spec\.containers\[0\] \("miner"\): securityContext\.privileged is true in namespace "shard-bad"/,
  /jit-binding-expiry/,
  /is more than 8h ahead; the maximum JIT grant is 8h/,
  /\[mandatory\]/,
];

/** The policy host's note that its RunPlugin started the pack. */
const RUN_PLUGIN =
  /TESTBED STAND-IN pulumi-language-nodejs RunPlugin \(analyzer\): node \S+run-policy-pack\S* \S+ \S+policy/;

interface Bed {
  readonly tools: Tools;
  readonly cluster: Cluster;
  readonly work: string;
  readonly pulumi: TestbedPulumi;
}
let bed: Bed | undefined;
const cleanups: (() => Promise<unknown>)[] = [];

test.before(async (t) => {
  const tools = await ensureTools();
  const work = await mkdtemp(join(tmpdir(), "shardworks-policy-"));
  cleanups.push(() => rm(work, { recursive: true, force: true }));
  const name = `e2e-policy-${process.pid}`;
  cleanups.push(() => stopCluster(name, { purge: true, log: () => undefined }));
  const cluster = await startCluster(name, { log: (line) => t.log(line) });
  const pulumi = await testbedPulumi(tools, cluster, work, "policy-e2e-passphrase", {
    policy: true,
  });
  bed = { tools, cluster, work, pulumi };
});

test.after.always(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

function theBed(): Bed {
  if (bed === undefined) throw new Error("the testbed did not start (see the before hook)");
  return bed;
}

/** A project directory with `fixtures/policy-shard-main.ts` (stack "good" is the fenced shard). */
async function policyProject(work: string): Promise<string> {
  const project = await mkdtemp(join(work, "project-"));
  await linkProject(project, "policy-e2e", join(__dirname, "fixtures", "policy-shard-main.ts"));
  return project;
}

test.serial(
  "Automation API preview with policyPacks refuses the bad shard, passes the good one",
  async (t) => {
    const { tools, work, pulumi } = theBed();
    const { pulumiCommand, envVars } = pulumi;
    const project = await policyProject(work);
    const stackOf = (stackName: string) =>
      LocalWorkspace.createOrSelectStack(
        { stackName, workDir: project },
        { pulumiCommand, envVars },
      );

    const bad = await stackOf("bad");
    let output = "";
    const started = Date.now();
    const error = await t.throwsAsync(
      bad.preview({ policyPacks: [POLICY_DIR], onOutput: (out) => (output += out) }),
    );
    t.log(
      `preview of the bad shard: refused after ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
    t.log(output);
    const all = `${output}\n${error?.message ?? ""}`;
    for (const refusal of REFUSALS) t.regex(all, refusal);
    t.regex(all, RUN_PLUGIN);

    const good = await stackOf("good");
    let goodOutput = "";
    const preview = await good.preview({
      policyPacks: [POLICY_DIR],
      onOutput: (out) => (goodOutput += out),
    });
    t.log(goodOutput);
    t.is(preview.changeSummary["create"], 5, "stack, provider, namespace, quota, network policy");
    t.notRegex(goodOutput, /\[mandatory\]/);
    t.true(
      goodOutput.includes(
        `using pulumi-resource-kubernetes from $PATH at ${join(tools.binDir, "pulumi-resource-kubernetes")}`,
      ),
      "the real provider",
    );
  },
);

test.serial(
  "pulumi preview --policy-pack policy (CLI, language host RunPlugin) refuses the bad shard",
  async (t) => {
    const { tools, work, pulumi } = theBed();
    const project = await policyProject(work);
    const cli = (args: string[]) =>
      execFileAsync(tools.pulumi, [...args, "--non-interactive", "--cwd", project], {
        env: { ...process.env, ...pulumi.envVars },
        maxBuffer: 64 * 1024 * 1024,
      }).then(
        ({ stdout, stderr }) => ({ ok: true, output: `${stdout}${stderr}` }),
        (error: { stdout?: string; stderr?: string }) => ({
          ok: false,
          output: `${error.stdout ?? ""}${error.stderr ?? ""}`,
        }),
      );

    for (const stack of ["bad", "good"]) {
      const init = await cli(["stack", "init", stack]);
      t.true(init.ok, init.output);
    }
    const started = Date.now();
    const bad = await cli(["preview", "--stack", "bad", "--policy-pack", POLICY_DIR]);
    t.log(
      `pulumi preview --policy-pack of the bad shard: ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
    t.log(bad.output);
    t.false(bad.ok, "the preview must fail");
    for (const refusal of REFUSALS) t.regex(bad.output, refusal);
    t.notRegex(bad.output, /does not implement the method runPlugin/);
    t.notRegex(bad.output, /\n\s+at .*\(.*:\d+:\d+\)/, "no stack trace");
    t.regex(bad.output, RUN_PLUGIN);

    const good = await cli(["preview", "--stack", "good", "--policy-pack", POLICY_DIR]);
    t.log(good.output);
    t.true(good.ok, "the fenced shard previews cleanly");
    t.regex(good.output, /5 to create/);
    t.regex(good.output, /shardworks@v?[\d.]+/, "the pack ran and reported itself");
    t.notRegex(good.output, /\[mandatory\]/);
    t.true(
      good.output.includes(
        `using pulumi-resource-kubernetes from $PATH at ${join(tools.binDir, "pulumi-resource-kubernetes")}`,
      ),
      "the real provider",
    );
  },
);
