/**
 * Local Kubernetes clusters for the testbed (`npm run cluster -- up|down|status [name…]`), each a
 * control plane and one node that runs pods (ADR 0011).
 *
 * Per named cluster: etcd (Debian `etcd-server`), kube-apiserver (token users, Node + RBAC),
 * kube-controller-manager (every default controller) and kube-scheduler on loopback ports of their
 * own; a node in a network namespace of its own (`shardworks-<name>`) with containerd (its own
 * root, state and socket), the kubelet, the bridge CNI, kube-proxy and CoreDNS; every process in
 * the cgroup `/shardworks-clusters/<name>`. State lives in `~/.cache/shardworks/clusters/<name>/` (override
 * the root with `SHARDWORKS_CACHE`): `kubeconfig` (admin, group `system:masters`),
 * `kubeconfig-<user>` per test user, `pki/`, `state.json` (pids and ports), `logs/`, `node/`.
 * `down` leaves no process, mount, interface, network namespace, iptables rule or cgroup behind;
 * certificates, tokens and kubeconfigs stay for a fast next `up` (`--purge` deletes them too).
 */
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { Command } from "commander";
import { clusterDir, ClusterName, clustersRoot } from "./cluster/common";
import { clusterStatus, startCluster, stopCluster } from "./cluster/lifecycle";

export { clusterRequest, type ClusterResponse } from "./cluster/api";
export { ClusterName, clusterDir } from "./cluster/common";
export type { NodeNetwork } from "./cluster/network";
export {
  type Cluster,
  clusterStatus,
  DEFAULT_USERS,
  startCluster,
  type StartClusterOptions,
  stopCluster,
} from "./cluster/lifecycle";

async function listClusters(): Promise<string[]> {
  const root = clustersRoot();
  if (!existsSync(root)) return [];
  return (await readdir(root)).filter((n) => ClusterName.safeParse(n).success);
}

function names(args: string[]): string[] {
  const list = args.length > 0 ? args : ["local"];
  for (const n of list) clusterDir(n);
  return list;
}

if (require.main === module) {
  const program = new Command("cluster").description(
    "Local Kubernetes clusters for the testbed: a control plane and a node that runs pods",
  );
  program
    .command("up")
    .argument("[names...]", "cluster names (default: local)")
    .option("--no-node", "API server, etcd and controller manager only: no pods run")
    .action(async (args: string[], opts: { node: boolean }) => {
      for (const n of names(args)) {
        const c = await startCluster(n, { node: opts.node });
        process.stdout.write(
          `${n}: ${c.server}  node ${c.nodeName ?? "-"} ${c.network.nodeIP}  KUBECONFIG=${c.kubeconfigPath}\n`,
        );
      }
    });
  program
    .command("down")
    .argument("[names...]", "cluster names (default: local; 'all' for every cluster)")
    .option("--purge", "also delete certificates, tokens and kubeconfigs")
    .action(async (args: string[], opts: { purge?: boolean }) => {
      const list = args.length === 1 && args[0] === "all" ? await listClusters() : names(args);
      for (const n of list) await stopCluster(n, { purge: opts.purge === true });
    });
  program
    .command("status")
    .argument("[names...]", "cluster names (default: every cluster)")
    .action(async (args: string[]) => {
      const list = args.length > 0 ? names(args) : await listClusters();
      if (list.length === 0) process.stdout.write("no clusters\n");
      for (const n of list) {
        const s = await clusterStatus(n);
        process.stdout.write(
          s.running
            ? `${n}: running ${s.server} ready=${String(s.ready)} KUBECONFIG=${s.kubeconfig}\n`
            : `${n}: stopped\n`,
        );
      }
    });
  program.parseAsync().catch((error: unknown) => {
    process.stderr.write(`cluster: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
