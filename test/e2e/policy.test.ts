/**
 * The policy pack in the real engine (the Pulumi CLI built by `npm run tools`) against a local
 * cluster, with the tools PATH as a user has it: a shard stack that breaks mandatory rules must be
 * refused by `preview`, a well-fenced one passes. Twice:
 *
 * - Automation API, inline program, `preview({ policyPacks: ["policy"] })`;
 * - the CLI on a project directory, `pulumi preview --policy-pack policy`: the language host runs
 *   the program (Run) and starts the pack (RunPlugin → `run-policy-pack`).
 *
 * The refused stack is a small program of its own (`fixtures/policy-shard.ts`), not our shard
 * program: the config schema and the components make every valid shard config compliant
 * (test/unit/policy-components.test.ts), so only hand-written resources can break the rules.
 */
import test from "ava";
import { LocalWorkspace } from "@pulumi/pulumi/automation";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { startCluster, stopCluster, type Cluster } from "../../scripts/cluster";
import { testbedPulumi, type TestbedPulumi } from "../../scripts/pulumi-env";
import { ensureTools, usesTestbedLanguageHost, type Tools } from "../../scripts/tools";
import { shardResources } from "./fixtures/policy-shard";

const repoRoot = resolve(__dirname, "..", "..");
const POLICY_DIR = join(repoRoot, "policy");
const execFileAsync = promisify(execFile);

function loud(t: { log: (line: string) => void }, lines: string[]): void {
  const banner = "!".repeat(96);
  for (const line of [banner, ...lines.map((l) => `!!! ${l}`), banner]) {
    t.log(line);
    process.stderr.write(`${line}\n`);
  }
}

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

/** The stand-in language host's note that its RunPlugin started the pack (not the analyzer shim). */
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
  const providerPath = join(tools.binDir, "pulumi-resource-kubernetes");
  if (!existsSync(providerPath)) {
    loud(t, [
      "pulumi-resource-kubernetes is NOT AVAILABLE (neither built nor a testbed stand-in).",
      "UNVERIFIED: the policy pack in the real engine. Only the direct tests of the rules ran.",
    ]);
    throw new Error("no Kubernetes provider plugin to preview Kubernetes resources with");
  }
  if (readFileSync(providerPath, "utf8").includes("TESTBED STAND-IN")) {
    loud(t, [
      "pulumi-resource-kubernetes is the TESTBED STAND-IN, not the real provider:",
      "the engine, analyzer and policy pack are real; the provider's Check/Diff are the stand-in's.",
    ]);
  }
  if (usesTestbedLanguageHost(tools)) {
    loud(t, [
      "pulumi-language-nodejs is the TESTBED STAND-IN (scripts/testbed-language-host): the engine",
      "starts the pack through ITS RunPlugin (run-policy-pack), not the real host's policy proxy.",
    ]);
  }
  const work = await mkdtemp(join(tmpdir(), "shardworks-policy-"));
  cleanups.push(() => rm(work, { recursive: true, force: true }));
  const name = `e2e-policy-${process.pid}`;
  cleanups.push(() => stopCluster(name, { purge: true, log: () => undefined }));
  const cluster = await startCluster(name, { log: (line) => t.log(line) });
  const pulumi = await testbedPulumi(tools, cluster, work, "policy-e2e-passphrase");
  bed = { tools, cluster, work, pulumi };
});

test.after.always(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

function theBed(): Bed {
  if (bed === undefined) throw new Error("the testbed did not start (see the before hook)");
  return bed;
}

test.serial(
  "Automation API preview with policyPacks refuses the bad shard, passes the good one",
  async (t) => {
    const { cluster, work, pulumi } = theBed();
    const { pulumiCommand, envVars, backendUrl } = pulumi;
    await mkdir(join(work, "inline"));
    const stackOf = (stackName: string, fenced: boolean) =>
      LocalWorkspace.createOrSelectStack(
        {
          projectName: "policy-e2e",
          stackName,
          program: () => Promise.resolve(shardResources(fenced, cluster.kubeconfig)),
        },
        {
          workDir: join(work, "inline"),
          pulumiCommand,
          envVars,
          projectSettings: { name: "policy-e2e", runtime: "nodejs", backend: { url: backendUrl } },
        },
      );

    const bad = await stackOf("bad", false);
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
    if (usesTestbedLanguageHost(theBed().tools)) t.regex(all, RUN_PLUGIN);

    const good = await stackOf("good", true);
    let goodOutput = "";
    const preview = await good.preview({
      policyPacks: [POLICY_DIR],
      onOutput: (out) => (goodOutput += out),
    });
    t.log(goodOutput);
    t.is(preview.changeSummary["create"], 5, "stack, provider, namespace, quota, network policy");
    t.notRegex(goodOutput, /\[mandatory\]/);
  },
);

test.serial(
  "pulumi preview --policy-pack policy (CLI, language host RunPlugin) refuses the bad shard",
  async (t) => {
    const { tools, work, pulumi } = theBed();
    // A project directory as a user has one: Pulumi.yaml, the program, the packages (by symlink, so
    // modules resolve to the repo's real paths).
    const project = await mkdtemp(join(work, "project-"));
    await writeFile(
      join(project, "Pulumi.yaml"),
      "name: policy-e2e-cli\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: index.ts\n",
    );
    await symlink(join(__dirname, "fixtures", "policy-shard-main.ts"), join(project, "index.ts"));
    for (const entry of ["package.json", "node_modules"]) {
      await symlink(join(repoRoot, entry), join(project, entry));
    }
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
    if (usesTestbedLanguageHost(tools)) {
      // The pack was started by the stand-in's RunPlugin, not by pulumi-analyzer-policy-nodejs.
      t.regex(bad.output, RUN_PLUGIN);
    }

    const good = await cli(["preview", "--stack", "good", "--policy-pack", POLICY_DIR]);
    t.log(good.output);
    t.true(good.ok, "the fenced shard previews cleanly");
    t.regex(good.output, /5 to create/);
    t.regex(good.output, /shardworks@v?[\d.]+/, "the pack ran and reported itself");
    t.notRegex(good.output, /\[mandatory\]/);
  },
);
