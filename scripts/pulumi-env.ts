/**
 * The environment the testbed runs the Pulumi engine in: a local file backend, passphrase secrets,
 * an isolated PULUMI_HOME, the tools cache first on PATH (the real `pulumi-language-nodejs` and
 * `pulumi-resource-kubernetes` come from there), and no plugin downloads ever.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { PulumiCommand } from "@pulumi/pulumi/automation";
import type { Cluster } from "./cluster";
import type { Tools } from "./tools";

/** What {@link testbedPulumi} returns. */
export interface TestbedPulumi {
  /** For `LocalWorkspace` options: `{ pulumiCommand, envVars }`. */
  readonly pulumiCommand: PulumiCommand;
  readonly envVars: Record<string, string>;
  /** `file://…` URL of the state backend (also in `envVars.PULUMI_BACKEND_URL`). */
  readonly backendUrl: string;
}

/** Options of {@link testbedPulumi}. */
export interface TestbedPulumiOptions {
  /**
   * Runs with a Node.js policy pack: put `tools.policyBinDir` first on PATH. The 3.248 engine
   * starts a Node.js pack only through the language host's RunPlugin, which the real host served
   * here (v3.68.0) lacks; the policy-bin host forwards everything else to the real one.
   */
  readonly policy?: boolean;
}

/** The PATH of testbed engine runs: the tools (and, for policy runs, the policy host) first. */
export function testbedPath(tools: Tools, options: TestbedPulumiOptions = {}): string {
  const dirs = options.policy === true ? [tools.policyBinDir, tools.binDir] : [tools.binDir];
  return [...dirs, process.env.PATH ?? ""].join(":");
}

/** Prepare `workDir/backend` and `workDir/pulumi-home` and the engine's environment. */
export async function testbedPulumi(
  tools: Tools,
  cluster: Cluster,
  workDir: string,
  passphrase: string,
  options: TestbedPulumiOptions = {},
): Promise<TestbedPulumi> {
  const backend = join(workDir, "backend");
  await mkdir(backend, { recursive: true });
  const caFile = join(workDir, `${cluster.name}-ca.crt`);
  await writeFile(caFile, cluster.caCert);
  const backendUrl = `file://${backend}`;
  const envVars = {
    PULUMI_BACKEND_URL: backendUrl,
    PULUMI_CONFIG_PASSPHRASE: passphrase,
    PULUMI_HOME: join(workDir, "pulumi-home"),
    PULUMI_SKIP_UPDATE_CHECK: "true",
    // The engine must never download a plugin: every plugin comes from the tools cache on PATH.
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PATH: testbedPath(tools, options),
    // The language host runs TypeScript with ts-node; type checking is `npm run typecheck`'s job
    // (ts-node checking the whole program, @pulumi/aws included, costs many seconds per run).
    PULUMI_NODEJS_TRANSPILE_ONLY: "true",
    // Dynamic providers (ShardRegistration) that speak HTTPS trust the cluster's CA.
    NODE_EXTRA_CA_CERTS: caFile,
    KUBECONFIG: cluster.kubeconfigPath,
  };
  const pulumiCommand = await PulumiCommand.get({ root: dirname(dirname(tools.pulumi)) });
  return { pulumiCommand, envVars, backendUrl };
}
