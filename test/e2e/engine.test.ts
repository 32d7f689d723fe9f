/**
 * The first real engine run: the Pulumi CLI built by `npm run tools`, driven by the Automation API
 * on a project directory (so the real `pulumi-language-nodejs` runs the program), with the real
 * `pulumi-resource-kubernetes` (both from the tools cache), against a local cluster.
 */
import test from "ava";
import * as k8s from "@kubernetes/client-node";
import { LocalWorkspace } from "@pulumi/pulumi/automation";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCluster, stopCluster } from "../../scripts/cluster";
import { testbedPulumi } from "../../scripts/pulumi-env";
import { ensureTools } from "../../scripts/tools";
import { statusOf } from "../helpers/kube";
import { assertRealPlugins, linkProject } from "./project";

const NAMESPACE = "engine-e2e";

test("pulumi up creates a namespace and config maps in a real API server; preview is then empty; destroy removes them", async (t) => {
  const tools = await ensureTools();
  const name = `e2e-engine-${process.pid}`;
  t.teardown(() => stopCluster(name, { purge: true, log: () => undefined }));
  const cluster = await startCluster(name, { log: (line) => t.log(line) });

  const work = await mkdtemp(join(tmpdir(), "shardworks-engine-"));
  t.teardown(() => rm(work, { recursive: true, force: true }));
  const { pulumiCommand, envVars } = await testbedPulumi(
    tools,
    cluster,
    work,
    "engine-e2e-passphrase",
  );
  const project = join(work, "project");
  await linkProject(project, "engine-e2e", join(__dirname, "fixtures", "engine-program.ts"));
  const stack = await LocalWorkspace.createOrSelectStack(
    { stackName: "local", workDir: project },
    { pulumiCommand, envVars },
  );
  await stack.setConfig("engine-e2e:kubeconfig", { value: cluster.kubeconfigPath });

  let output = "";
  const upStarted = Date.now();
  const up = await stack.up({ onOutput: (out) => (output += out) });
  t.log(output);
  t.log(`pulumi up: ${((Date.now() - upStarted) / 1000).toFixed(1)} s`);
  t.is(up.summary.result, "succeeded");
  // The stack, two explicit providers, the namespace and two config maps.
  t.is(up.summary.resourceChanges?.create, 6);
  assertRealPlugins(t, tools, output);

  const config = new k8s.KubeConfig();
  config.loadFromFile(cluster.kubeconfigPath);
  const core = config.makeApiClient(k8s.CoreV1Api);
  const ns = await core.readNamespace({ name: NAMESPACE });
  t.is(ns.status?.phase, "Active");
  const cm = await core.readNamespacedConfigMap({ namespace: NAMESPACE, name: "greeting" });
  t.deepEqual(cm.data, { hello: "world" });
  const autoNamed = String(up.outputs.autoNamed?.value);
  t.regex(autoNamed, /^auto-[a-z0-9]{8}$/, "an object without a name is auto-named");
  t.is(up.outputs.autoNamespace?.value, NAMESPACE, "the provider's namespace is the default");
  const auto = await core.readNamespacedConfigMap({ namespace: NAMESPACE, name: autoNamed });
  t.deepEqual(auto.data, { auto: "named" });

  const preview = await stack.preview();
  const changes = Object.entries(preview.changeSummary).filter(([op, n]) => op !== "same" && n > 0);
  t.deepEqual(changes, [], "preview after up must show no changes");

  const destroyStarted = Date.now();
  const destroyed = await stack.destroy({ onOutput: (out) => t.log(out.trimEnd()) });
  t.is(destroyed.summary.result, "succeeded");
  // The real provider waits for a deleted namespace to be finalized: it is gone when destroy ends.
  t.log(`pulumi destroy: ${((Date.now() - destroyStarted) / 1000).toFixed(1)} s`);
  t.is(await statusOf(() => core.readNamespace({ name: NAMESPACE })), 404);
  await stack.workspace.removeStack("local");
});
