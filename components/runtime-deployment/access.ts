/**
 * The runtime's least privilege beyond its ServiceAccounts: the access reaper's RBAC and the
 * NetworkPolicies of the namespace (deny all ingress, then open exactly the paths the design uses).
 */
import * as k8s from "@pulumi/kubernetes";
import { EXPIRES_AT_ANNOTATION, Ports } from "../../contract";
import { appLabels } from "../common";
import { ns, selectorOf, type RuntimeScope } from "./scope";

/**
 * The ClusterRole of the access reaper (run by the routing controller) and its binding to
 * `routingSa`.
 */
export function createReaperRbac(scope: RuntimeScope, routingSa: k8s.core.v1.ServiceAccount): void {
  const { name, parent } = scope;
  // RBAC cannot select by annotation: the reaper checks shardworks.dev/expires-at itself and
  // deletes only bindings that carry it.
  const reaperRole = new k8s.rbac.v1.ClusterRole(
    `${name}-reaper-role`,
    {
      metadata: {
        name: "shardworks:access-reaper",
        labels: appLabels(name, "routing"),
        annotations: { "shardworks.dev/deletes-only-annotated": EXPIRES_AT_ANNOTATION },
      },
      rules: [
        {
          apiGroups: ["rbac.authorization.k8s.io"],
          resources: ["rolebindings", "clusterrolebindings"],
          verbs: ["get", "list", "watch", "delete"],
        },
      ],
    },
    { parent },
  );
  new k8s.rbac.v1.ClusterRoleBinding(
    `${name}-reaper-binding`,
    {
      metadata: { name: "shardworks:access-reaper", labels: appLabels(name, "routing") },
      roleRef: {
        apiGroup: "rbac.authorization.k8s.io",
        kind: "ClusterRole",
        name: "shardworks:access-reaper",
      },
      subjects: [{ kind: "ServiceAccount", name: "shardworks-routing", namespace: ns }],
    },
    { parent, dependsOn: [reaperRole, routingSa] },
  );
}

/** The namespace's NetworkPolicies. */
export function createNetworkPolicies(scope: RuntimeScope): void {
  const { name, args } = scope;
  // NetworkPolicies: deny all ingress, then open exactly the paths the design uses.
  const policy = (role: string, spec: k8s.types.input.networking.v1.NetworkPolicySpec) =>
    new k8s.networking.v1.NetworkPolicy(
      `${name}-netpol-${role}`,
      { metadata: { name: role, namespace: ns, labels: appLabels(name, "runtime") }, spec },
      scope.inNs,
    );
  const fromRuntime = {
    podSelector: { matchLabels: { "app.kubernetes.io/part-of": "shardworks" } },
  };
  policy("default-deny-ingress", { podSelector: {}, policyTypes: ["Ingress"] });
  policy("allow-etcd", {
    podSelector: { matchLabels: selectorOf(scope, "etcd") },
    policyTypes: ["Ingress"],
    ingress: [
      {
        from: [fromRuntime],
        ports: [{ port: Ports.etcdClient }, { port: Ports.etcdPeer }],
      },
    ],
  });
  // The scheduler API is token-authenticated and called by shard stacks and the CLI.
  policy("allow-scheduler-api", {
    podSelector: { matchLabels: selectorOf(scope, "scheduler") },
    policyTypes: ["Ingress"],
    ingress: [{ ports: [{ port: Ports.schedulerApi }] }],
  });
  policy("allow-xds-from-gateway", {
    podSelector: { matchLabels: selectorOf(scope, "routing") },
    policyTypes: ["Ingress"],
    ingress: [
      {
        from: [
          {
            namespaceSelector: {
              matchLabels: { "kubernetes.io/metadata.name": args.gatewayNamespace },
            },
          },
          // The scheduler asks each replica's CSDS (same port) for /v1/xds/clients.
          { podSelector: { matchLabels: selectorOf(scope, "scheduler") } },
        ],
        ports: [{ port: Ports.xds }],
      },
    ],
  });
  policy("allow-node-agent", {
    podSelector: { matchLabels: selectorOf(scope, "node-agent") },
    policyTypes: ["Ingress"],
    ingress: [{ from: [fromRuntime], ports: [{ port: Ports.nodeAgent }] }],
  });
}
