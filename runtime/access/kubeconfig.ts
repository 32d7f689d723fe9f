/** Which cluster the access tools talk to: `--kubeconfig`, else `KUBECONFIG`, else the default. */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { AccessError } from "./duration";

/**
 * Load a kubeconfig from `path` when given, else as kubectl does (`KUBECONFIG`, `~/.kube/config`,
 * in-cluster). A missing or unreadable file is one line naming the flag.
 */
export function loadKubeConfig(path?: string): k8s.KubeConfig {
  const config = new k8s.KubeConfig();
  if (path === undefined && !anyDefaultKubeconfig()) {
    // client-node would fall back to http://localhost:8080 and fail later with a TLS message.
    throw new AccessError(
      "--kubeconfig: no kubeconfig (no KUBECONFIG, no ~/.kube/config, not in a pod); pass --kubeconfig <file> or set KUBECONFIG (`npm start` runs no Kubernetes; `npm run cluster -- up <name>` starts one and prints its KUBECONFIG)",
    );
  }
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

/** Whether kubectl's defaults name a kubeconfig: `KUBECONFIG`, `~/.kube/config`, or a pod's. */
function anyDefaultKubeconfig(): boolean {
  if (process.env.KUBECONFIG) return true;
  if (process.env.KUBERNETES_SERVICE_HOST) return true;
  return existsSync(join(homedir(), ".kube", "config"));
}
