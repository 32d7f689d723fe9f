/**
 * The configuration files of a cluster's node: containerd (its own root, state, socket and runc
 * root, never the system's), the CNI network (bridge + host-local + portmap; containerd adds
 * loopback), the kubelet, kube-proxy and CoreDNS. Everything lives in `<cluster>/node/`, which
 * `down` deletes.
 */
import { join } from "node:path";
import { stringify } from "yaml";
import type { NodeNetwork } from "./network";

/** Files and directories of a node. */
export interface NodePaths {
  readonly root: string;
  readonly containerdConfig: string;
  readonly containerdRoot: string;
  readonly containerdState: string;
  readonly containerdSocket: string;
  readonly runcRoot: string;
  readonly registryHosts: string;
  readonly cniConfDir: string;
  readonly cniIpamDir: string;
  readonly kubeletRoot: string;
  readonly kubeletConfig: string;
  readonly podLogs: string;
  readonly kubeProxyConfig: string;
  readonly corefile: string;
  /** Kubeconfig of a node component (`kubelet`, `kube-proxy`, `coredns`). */
  kubeconfig(component: string): string;
}

/** The layout of the node of the cluster in `dir`. */
export function nodePaths(dir: string): NodePaths {
  const root = join(dir, "node");
  return {
    root,
    containerdConfig: join(root, "containerd.toml"),
    containerdRoot: join(root, "containerd", "root"),
    containerdState: join(root, "containerd", "state"),
    containerdSocket: join(root, "containerd.sock"),
    runcRoot: join(root, "runc"),
    registryHosts: join(root, "certs.d"),
    cniConfDir: join(root, "cni", "net.d"),
    cniIpamDir: join(root, "cni", "ipam"),
    kubeletRoot: join(root, "kubelet"),
    kubeletConfig: join(root, "kubelet.yaml"),
    podLogs: join(root, "pod-logs"),
    kubeProxyConfig: join(root, "kube-proxy.yaml"),
    corefile: join(root, "Corefile"),
    kubeconfig: (component) => join(root, `${component}.kubeconfig`),
  };
}

/** Where Debian's containernetworking-plugins puts the plugins. */
export const CNI_BIN_DIR = "/usr/lib/cni";

/** containerd's config (version 2 schema of containerd 1.6). */
export function containerdToml(paths: NodePaths, sandboxImage: string): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  const q = JSON.stringify;
  return [
    "version = 2",
    `root = ${q(paths.containerdRoot)}`,
    `state = ${q(paths.containerdState)}`,
    // Plugins that would reach outside the node's directories (/opt/containerd) or need a kernel
    // feature we do not use.
    "disabled_plugins = [",
    '  "io.containerd.internal.v1.opt",',
    '  "io.containerd.snapshotter.v1.aufs",',
    '  "io.containerd.snapshotter.v1.btrfs",',
    '  "io.containerd.snapshotter.v1.devmapper",',
    '  "io.containerd.snapshotter.v1.zfs",',
    '  "io.containerd.tracing.processor.v1.otlp",',
    '  "io.containerd.internal.v1.tracing",',
    "]",
    "",
    "[grpc]",
    `  address = ${q(paths.containerdSocket)}`,
    "",
    // containerd 1.6 cannot run without the v1 runtime plugin; its root is the node's too.
    '[plugins."io.containerd.runtime.v1.linux"]',
    `  runtime_root = ${q(`${paths.runcRoot}-v1`)}`,
    "",
    `[${cri}]`,
    `  sandbox_image = ${q(sandboxImage)}`,
    // runc cannot lower oom_score_adj without CAP_SYS_RESOURCE, which processes here lack; every
    // sandbox failed with "can't get final child's PID from pipe" until this was set.
    "  restrict_oom_score_adj = true",
    // Pod network namespaces under the node's state dir, not /run/netns of the host.
    "  netns_mounts_under_state_dir = true",
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"',
    "  enable_selinux = false",
    `  [${cri}.containerd]`,
    '    snapshotter = "overlayfs"',
    '    default_runtime_name = "runc"',
    `  [${cri}.containerd.runtimes.runc]`,
    '    runtime_type = "io.containerd.runc.v2"',
    `  [${cri}.containerd.runtimes.runc.options]`,
    "    SystemdCgroup = false",
    `    Root = ${q(paths.runcRoot)}`,
    `  [${cri}.cni]`,
    `    bin_dir = ${q(CNI_BIN_DIR)}`,
    `    conf_dir = ${q(paths.cniConfDir)}`,
    "    max_conf_num = 1",
    `  [${cri}.registry]`,
    `    config_path = ${q(paths.registryHosts)}`,
    "",
  ].join("\n");
}

/**
 * containerd's `hosts.toml` for the testbed registry: images are named `localhost:<port>/…`; the
 * node pulls them over plain HTTP from the forwarder on the host's veth address.
 */
export function registryHostsToml(registryHost: string, net: NodeNetwork, port: number): string {
  return [
    `server = "http://${registryHost}"`,
    "",
    `[host."http://${net.hostIP}:${port}"]`,
    '  capabilities = ["pull", "resolve"]',
    "",
  ].join("\n");
}

/** The CNI network of the node's pods, on the node's `node.spec.podCIDR`. */
export function cniConflist(name: string, paths: NodePaths, nodePodCIDR: string): string {
  return JSON.stringify(
    {
      cniVersion: "0.4.0",
      name: `shardworks-${name}`,
      plugins: [
        {
          type: "bridge",
          bridge: "cni0",
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: "host-local",
            ranges: [[{ subnet: nodePodCIDR }]],
            routes: [{ dst: "0.0.0.0/0" }],
            dataDir: paths.cniIpamDir,
          },
        },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
}

/** The kubelet's KubeletConfiguration. */
export function kubeletYaml(
  paths: NodePaths,
  pki: string,
  net: NodeNetwork,
  cgroupRoot: string,
): string {
  return stringify({
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    // cgroups here are v1, which kubelet 1.36 refuses by default.
    failCgroupV1: false,
    // containerd 1.6 has no RuntimeConfig, so the kubelet uses this driver as configured.
    cgroupDriver: "cgroupfs",
    cgroupRoot,
    cgroupsPerQOS: true,
    containerRuntimeEndpoint: `unix://${paths.containerdSocket}`,
    address: net.nodeIP,
    port: 10250,
    readOnlyPort: 0,
    healthzBindAddress: "127.0.0.1",
    healthzPort: 10248,
    tlsCertFile: join(pki, "kubelet.crt"),
    tlsPrivateKeyFile: join(pki, "kubelet.key"),
    rotateCertificates: false,
    serverTLSBootstrap: false,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: join(pki, "ca.crt") },
    },
    authorization: { mode: "Webhook" },
    clusterDomain: "cluster.local",
    clusterDNS: [net.dnsIP],
    // The host's resolver is not reachable from pods; `dnsPolicy: Default` gets no nameserver.
    resolvConf: "",
    podLogsDir: paths.podLogs,
    serializeImagePulls: false,
    failSwapOn: false,
    // A shared development machine: evict only when really short.
    evictionHard: {
      "memory.available": "100Mi",
      "nodefs.available": "2%",
      "imagefs.available": "2%",
      "nodefs.inodesFree": "2%",
    },
    imageGCHighThresholdPercent: 98,
    imageGCLowThresholdPercent: 95,
    enforceNodeAllocatable: ["pods"],
    maxPods: 110,
  });
}

/** kube-proxy's KubeProxyConfiguration: iptables mode, in the node's network namespace. */
export function kubeProxyYaml(paths: NodePaths, net: NodeNetwork, nodeName: string): string {
  return stringify({
    apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
    kind: "KubeProxyConfiguration",
    clientConnection: { kubeconfig: paths.kubeconfig("kube-proxy") },
    mode: "iptables",
    clusterCIDR: net.podCIDR,
    hostnameOverride: nodeName,
    healthzBindAddress: `${net.nodeIP}:10256`,
    metricsBindAddress: "127.0.0.1:10249",
    nodePortAddresses: [`${net.nodeIP}/32`],
    // Leave the conntrack sysctls alone: the table size is global to the machine.
    conntrack: {
      maxPerCore: 0,
      min: 0,
      tcpEstablishedTimeout: "0s",
      tcpCloseWaitTimeout: "0s",
    },
  });
}

/** CoreDNS serving the cluster zone from the API server (no upstream: nothing leaves the host). */
export function corefile(paths: NodePaths, net: NodeNetwork, contextName: string): string {
  return [
    ".:53 {",
    "    errors",
    "    health 127.0.0.1:8080",
    `    ready ${net.nodeIP}:8181`,
    "    kubernetes cluster.local in-addr.arpa ip6.arpa {",
    `        kubeconfig ${paths.kubeconfig("coredns")} ${contextName}`,
    "        pods insecure",
    "        fallthrough in-addr.arpa ip6.arpa",
    "        ttl 30",
    "    }",
    "    cache 30",
    "    loadbalance",
    "    reload",
    "}",
    "",
  ].join("\n");
}

/** The RBAC of CoreDNS and the `kube-dns` Service whose endpoint is CoreDNS on the node. */
export function dnsObjects(
  net: NodeNetwork,
  nodeName: string,
): { collection: string; object: Record<string, unknown> }[] {
  return [
    {
      collection: "/apis/rbac.authorization.k8s.io/v1/clusterroles",
      object: {
        metadata: { name: "system:coredns" },
        rules: [
          {
            apiGroups: [""],
            resources: ["endpoints", "services", "pods", "namespaces"],
            verbs: ["list", "watch"],
          },
          {
            apiGroups: ["discovery.k8s.io"],
            resources: ["endpointslices"],
            verbs: ["list", "watch"],
          },
        ],
      },
    },
    {
      collection: "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
      object: {
        metadata: { name: "system:coredns" },
        roleRef: {
          apiGroup: "rbac.authorization.k8s.io",
          kind: "ClusterRole",
          name: "system:coredns",
        },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "system:coredns" }],
      },
    },
    {
      collection: "/api/v1/namespaces/kube-system/services",
      object: {
        metadata: { name: "kube-dns", labels: { "k8s-app": "kube-dns" } },
        spec: {
          clusterIP: net.dnsIP,
          ports: [
            { name: "dns", port: 53, protocol: "UDP", targetPort: 53 },
            { name: "dns-tcp", port: 53, protocol: "TCP", targetPort: 53 },
          ],
        },
      },
    },
    {
      collection: "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices",
      object: {
        metadata: {
          name: "kube-dns-node",
          labels: {
            "kubernetes.io/service-name": "kube-dns",
            "endpointslice.kubernetes.io/managed-by": "testbed.shardworks.dev",
          },
        },
        addressType: "IPv4",
        endpoints: [{ addresses: [net.nodeIP], conditions: { ready: true }, nodeName }],
        ports: [
          { name: "dns", port: 53, protocol: "UDP" },
          { name: "dns-tcp", port: 53, protocol: "TCP" },
        ],
      },
    },
  ];
}

/** The read-only RBAC of kube-router's network-policy firewall (user `system:kube-router`). */
export function kubeRouterObjects(): { collection: string; object: Record<string, unknown> }[] {
  return [
    {
      collection: "/apis/rbac.authorization.k8s.io/v1/clusterroles",
      object: {
        metadata: { name: "system:kube-router" },
        rules: [
          {
            apiGroups: [""],
            resources: ["namespaces", "pods", "services", "nodes", "endpoints"],
            verbs: ["get", "list", "watch"],
          },
          {
            apiGroups: ["networking.k8s.io"],
            resources: ["networkpolicies"],
            verbs: ["get", "list", "watch"],
          },
          {
            apiGroups: ["discovery.k8s.io"],
            resources: ["endpointslices"],
            verbs: ["get", "list", "watch"],
          },
        ],
      },
    },
    {
      collection: "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
      object: {
        metadata: { name: "system:kube-router" },
        roleRef: {
          apiGroup: "rbac.authorization.k8s.io",
          kind: "ClusterRole",
          name: "system:kube-router",
        },
        subjects: [
          { apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "system:kube-router" },
        ],
      },
    },
  ];
}
