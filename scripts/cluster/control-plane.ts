/**
 * The control plane of a cluster, on the host, on loopback ports of its own: etcd (Debian's
 * `etcd-server`), kube-apiserver (token users, Node + RBAC authorization, advertised on the host's
 * veth address so pods reach it as the `kubernetes` Service), kube-controller-manager with every
 * default controller, kube-scheduler.
 */
import { join } from "node:path";
import { etcdArgs } from "../../runtime/lib/etcd-server";
import { daemon } from "./common";
import type { NodeNetwork } from "./network";

/** What the control plane's daemons are started with. */
export interface ControlPlaneContext {
  readonly name: string;
  readonly dir: string;
  readonly pki: string;
  readonly logs: string;
  readonly net: NodeNetwork;
  /** Directory of the Kubernetes binaries. */
  readonly bin: string;
  readonly cgroup: string;
}

/** etcd on two loopback ports; its data is deleted by `down`. */
export function startEtcd(
  ctx: ControlPlaneContext,
  clientPort: number,
  peerPort: number,
): { pid: number; endpoint: string } {
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const pid = daemon({
    binary: process.env.SHARDWORKS_ETCD ?? "etcd",
    args: etcdArgs({
      name: ctx.name,
      dataDir: join(ctx.dir, "etcd-data"),
      clientPort,
      peerPort,
      logLevel: "warn",
    }),
    log: join(ctx.logs, "etcd.log"),
    cgroup: ctx.cgroup,
  });
  return { pid, endpoint };
}

/** kube-apiserver on `127.0.0.1:<port>`; the node reaches it through a forwarder on the veth. */
export function startApiserver(ctx: ControlPlaneContext, etcd: string, port: number): number {
  const pki = (file: string): string => join(ctx.pki, file);
  return daemon({
    binary: join(ctx.bin, "kube-apiserver"),
    args: [
      `--etcd-servers=${etcd}`,
      "--bind-address=127.0.0.1",
      // The `kubernetes` Service's endpoint: the host's veth address, forwarded to loopback.
      `--advertise-address=${ctx.net.hostIP}`,
      `--secure-port=${port}`,
      `--cert-dir=${ctx.pki}`,
      `--tls-cert-file=${pki("apiserver.crt")}`,
      `--tls-private-key-file=${pki("apiserver.key")}`,
      `--client-ca-file=${pki("ca.crt")}`,
      `--token-auth-file=${join(ctx.dir, "tokens.csv")}`,
      "--authorization-mode=Node,RBAC",
      "--enable-admission-plugins=NodeRestriction",
      "--anonymous-auth=false",
      `--service-account-issuer=https://kubernetes.default.svc`,
      `--service-account-key-file=${pki("sa.pub")}`,
      `--service-account-signing-key-file=${pki("sa.key")}`,
      `--service-cluster-ip-range=${ctx.net.serviceCIDR}`,
      `--kubelet-client-certificate=${pki("apiserver-kubelet-client.crt")}`,
      `--kubelet-client-key=${pki("apiserver-kubelet-client.key")}`,
      `--kubelet-certificate-authority=${pki("ca.crt")}`,
      "--kubelet-preferred-address-types=InternalIP",
      // Aggregated APIs (what kubeadm configures): the front proxy's CA and client.
      `--requestheader-client-ca-file=${pki("front-proxy-ca.crt")}`,
      "--requestheader-allowed-names=front-proxy-client",
      "--requestheader-extra-headers-prefix=X-Remote-Extra-",
      "--requestheader-group-headers=X-Remote-Group",
      "--requestheader-username-headers=X-Remote-User",
      `--proxy-client-cert-file=${pki("front-proxy-client.crt")}`,
      `--proxy-client-key-file=${pki("front-proxy-client.key")}`,
      "--allow-privileged=true",
      "--profiling=false",
      "--v=1",
    ],
    log: join(ctx.logs, "kube-apiserver.log"),
    cgroup: ctx.cgroup,
  });
}

/** kube-controller-manager with every default controller (`--controllers=*`). */
export function startControllerManager(ctx: ControlPlaneContext, kubeconfig: string): number {
  const pki = (file: string): string => join(ctx.pki, file);
  return daemon({
    binary: join(ctx.bin, "kube-controller-manager"),
    args: [
      `--kubeconfig=${kubeconfig}`,
      "--leader-elect=false",
      "--secure-port=0",
      "--controllers=*",
      `--cluster-name=${ctx.name}`,
      // Each controller acts as its own service account, with the rights RBAC bootstraps for it.
      "--use-service-account-credentials=true",
      `--service-account-private-key-file=${pki("sa.key")}`,
      `--root-ca-file=${pki("ca.crt")}`,
      // CertificateSigningRequests are signed by the cluster CA.
      `--cluster-signing-cert-file=${pki("ca.crt")}`,
      `--cluster-signing-key-file=${pki("ca.key")}`,
      `--service-cluster-ip-range=${ctx.net.serviceCIDR}`,
      // The node's pod range comes from here (node.spec.podCIDR), as in kubeadm clusters.
      "--allocate-node-cidrs=true",
      `--cluster-cidr=${ctx.net.podCIDR}`,
      "--node-cidr-mask-size=24",
      "--v=1",
      `--cert-dir=${ctx.pki}`,
    ],
    log: join(ctx.logs, "kube-controller-manager.log"),
    cgroup: ctx.cgroup,
  });
}

/** kube-scheduler. */
export function startScheduler(ctx: ControlPlaneContext, kubeconfig: string): number {
  return daemon({
    binary: join(ctx.bin, "kube-scheduler"),
    args: [`--kubeconfig=${kubeconfig}`, "--leader-elect=false", "--secure-port=0", "--v=1"],
    log: join(ctx.logs, "kube-scheduler.log"),
    cgroup: ctx.cgroup,
  });
}
