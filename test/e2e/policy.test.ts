/**
 * The policy pack in the real engine: the Pulumi CLI built by `npm run tools`, driven by the
 * Automation API with an inline program and `policyPacks: ["policy"]`, against a local cluster.
 * A shard stack that breaks mandatory rules must be refused by `preview`; a well-fenced one passes.
 *
 * The engine starts the pack through `pulumi-analyzer-policy-nodejs` (installed by
 * `npm run tools`) only when it finds no `pulumi-language-nodejs`; the testbed's stand-in language
 * host does not implement RunPlugin ("The server does not implement the method runPlugin"), so when
 * it is in the tools cache this test runs the engine from a bin directory without it, and says so.
 */
import test from "ava";
import * as kubernetes from "@pulumi/kubernetes";
import { LocalWorkspace } from "@pulumi/pulumi/automation";
import { existsSync, readFileSync } from "node:fs";
import { link, mkdir, mkdtemp, readdir, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startCluster, stopCluster, type Cluster } from "../../scripts/cluster";
import { testbedPulumi } from "../../scripts/pulumi-env";
import { ensureTools } from "../../scripts/tools";

const POLICY_DIR = resolve(__dirname, "..", "..", "policy");

function loud(t: { log: (line: string) => void }, lines: string[]): void {
  const banner = "!".repeat(96);
  for (const line of [banner, ...lines.map((l) => `!!! ${l}`), banner]) {
    t.log(line);
    process.stderr.write(`${line}\n`);
  }
}

/** A shard namespace and what the program puts in it. */
function shardProgram(cluster: Cluster, fenced: boolean): () => Promise<Record<string, unknown>> {
  return () => {
    const provider = new kubernetes.Provider("local", { kubeconfig: cluster.kubeconfig });
    const name = fenced ? "shard-good" : "shard-bad";
    const inTwoDays = new Date(Date.now() + 2 * 86_400_000).toISOString();
    const inThirtyDays = new Date(Date.now() + 30 * 86_400_000).toISOString();
    const ns = new kubernetes.core.v1.Namespace(
      "ns",
      {
        metadata: {
          name,
          annotations: { "shardworks.dev/expires-at": fenced ? inTwoDays : inThirtyDays },
        },
      },
      { provider },
    );
    if (!fenced) {
      // Two more mandatory rules broken: a privileged pod, and a JIT grant for a whole day.
      new kubernetes.core.v1.Pod(
        "miner",
        {
          metadata: { namespace: name, name: "miner" },
          spec: {
            containers: [
              { name: "miner", image: "busybox", securityContext: { privileged: true } },
            ],
          },
        },
        { provider, dependsOn: [ns] },
      );
      new kubernetes.rbac.v1.RoleBinding(
        "grant",
        {
          metadata: {
            namespace: name,
            labels: { "shardworks.dev/jit": "true" },
            annotations: {
              "shardworks.dev/expires-at": new Date(Date.now() + 86_400_000).toISOString(),
            },
          },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "edit" },
          subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "mallory" }],
        },
        { provider, dependsOn: [ns] },
      );
    }
    if (fenced) {
      new kubernetes.core.v1.ResourceQuota(
        "quota",
        { metadata: { namespace: name, name: "shard-quota" }, spec: { hard: { pods: "5" } } },
        { provider, dependsOn: [ns] },
      );
      new kubernetes.networking.v1.NetworkPolicy(
        "deny",
        {
          metadata: { namespace: name, name: "default-deny-ingress" },
          spec: { podSelector: {}, policyTypes: ["Ingress"] },
        },
        { provider, dependsOn: [ns] },
      );
    }
    return Promise.resolve({ namespace: name });
  };
}

test("pulumi preview --policy-pack policy refuses a shard stack that breaks mandatory rules", async (t) => {
  const tools = await ensureTools();
  const providerPath = join(tools.binDir, "pulumi-resource-kubernetes");
  if (!existsSync(providerPath)) {
    loud(t, [
      "pulumi-resource-kubernetes is NOT AVAILABLE (neither built nor a testbed stand-in).",
      "UNVERIFIED: the policy pack in the real engine. Only the direct tests of the rules ran.",
    ]);
    t.fail("no Kubernetes provider plugin to preview Kubernetes resources with");
    return;
  }
  if (readFileSync(providerPath, "utf8").includes("TESTBED STAND-IN")) {
    loud(t, [
      "pulumi-resource-kubernetes is the TESTBED STAND-IN, not the real provider:",
      "the engine, analyzer and policy pack are real; the provider's Check/Diff are the stand-in's.",
    ]);
  }

  const work = await mkdtemp(join(tmpdir(), "shardworks-policy-"));
  t.teardown(() => rm(work, { recursive: true, force: true }));
  // The tools, minus a language host: the engine then starts the pack with our analyzer shim.
  const bin = join(work, "bin");
  await mkdir(bin);
  for (const file of await readdir(tools.binDir)) {
    if (file === "pulumi-language-nodejs") continue;
    // The CLI also finds plugins next to its own (symlink-resolved) executable: link it hard.
    if (file === "pulumi") await link(join(tools.binDir, file), join(bin, file));
    else await symlink(join(tools.binDir, file), join(bin, file));
  }
  if (existsSync(join(tools.binDir, "pulumi-language-nodejs"))) {
    loud(t, [
      "pulumi-language-nodejs is in the tools cache; with it the engine would run the pack via the",
      "language host's RunPlugin. This test leaves it off PATH so pulumi-analyzer-policy-nodejs runs.",
    ]);
  }

  const name = `e2e-policy-${process.pid}`;
  t.teardown(() => stopCluster(name, { purge: true, log: () => undefined }));
  const cluster = await startCluster(name, { log: (line) => t.log(line) });
  const { pulumiCommand, envVars, backendUrl } = await testbedPulumi(
    { ...tools, binDir: bin, pulumi: join(bin, "pulumi") },
    cluster,
    work,
    "policy-e2e-passphrase",
  );
  const stackOf = (stackName: string, fenced: boolean) =>
    LocalWorkspace.createOrSelectStack(
      { projectName: "policy-e2e", stackName, program: shardProgram(cluster, fenced) },
      {
        workDir: work,
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
  t.log(`preview of the bad shard: refused after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  t.log(output);
  const all = `${output}\n${error?.message ?? ""}`;
  t.regex(all, /shard-namespace-fences/);
  t.regex(all, /shard namespace "shard-bad" has no ResourceQuota/);
  t.regex(all, /shard namespace "shard-bad" has no default-deny NetworkPolicy/);
  t.regex(all, /shard-ttl-at-most-7-days/);
  t.regex(all, /is more than 7 days ahead; the longest shard TTL is 7 days/);
  t.regex(all, /no-privileged-workloads/);
  t.regex(
    all,
    /spec\.containers\[0\] \("miner"\): securityContext\.privileged is true in namespace "shard-bad"/,
  );
  t.regex(all, /jit-binding-expiry/);
  t.regex(all, /is more than 8h ahead; the maximum JIT grant is 8h/);
  t.regex(all, /\[mandatory\]/);

  const good = await stackOf("good", true);
  let goodOutput = "";
  const preview = await good.preview({
    policyPacks: [POLICY_DIR],
    onOutput: (out) => (goodOutput += out),
  });
  t.log(goodOutput);
  t.is(preview.changeSummary["create"], 5, "stack, provider, namespace, quota, network policy");
  t.notRegex(goodOutput, /\[mandatory\]/);
});
