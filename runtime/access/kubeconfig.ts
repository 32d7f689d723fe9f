/** Which cluster the access tools talk to: `--kubeconfig`, else `KUBECONFIG`, else the default. */
import * as k8s from "@kubernetes/client-node";
import { AccessError } from "./duration";

/**
 * Load a kubeconfig from `path` when given, else as kubectl does (`KUBECONFIG`, `~/.kube/config`,
 * in-cluster). A missing or unreadable file is one line naming the flag.
 */
export function loadKubeConfig(path?: string): k8s.KubeConfig {
  const config = new k8s.KubeConfig();
  try {
    if (path === undefined) config.loadFromDefault();
    else config.loadFromFile(path);
  } catch (error) {
    throw new AccessError(
      `--kubeconfig: cannot read ${path ?? "the default kubeconfig"} (${(error as Error).message}); pass --kubeconfig <file> or set KUBECONFIG`,
    );
  }
  if (config.getCurrentCluster() === null) {
    throw new AccessError(
      "--kubeconfig: no current cluster in the kubeconfig; pass --kubeconfig <file> or set KUBECONFIG",
    );
  }
  return config;
}
