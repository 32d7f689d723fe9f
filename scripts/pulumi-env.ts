/**
 * The environment the testbed runs the Pulumi engine in: a local file backend, passphrase secrets,
 * an isolated PULUMI_HOME, the tools cache first on PATH, and no plugin downloads ever.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { PulumiCommand } from "@pulumi/pulumi/automation";
import type { Cluster } from "./cluster";
import type { Tools } from "./tools";

export interface TestbedPulumi {
  /** For `LocalWorkspace` options: `{ pulumiCommand, envVars }`. */
  readonly pulumiCommand: PulumiCommand;
  readonly envVars: Record<string, string>;
  /** `file://…` URL of the state backend (also in `envVars.PULUMI_BACKEND_URL`). */
  readonly backendUrl: string;
}

/** Prepare `workDir/backend` and `workDir/pulumi-home` and the engine's environment. */
export async function testbedPulumi(
  tools: Tools,
  cluster: Cluster,
  workDir: string,
  passphrase: string,
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
    PATH: `${tools.binDir}:${process.env.PATH ?? ""}`,
    // Providers that speak to the API server directly (the dynamic provider) trust its CA.
    NODE_EXTRA_CA_CERTS: caFile,
    KUBECONFIG: cluster.kubeconfigPath,
  };
  const pulumiCommand = await PulumiCommand.get({ root: dirname(dirname(tools.pulumi)) });
  return { pulumiCommand, envVars, backendUrl };
}
