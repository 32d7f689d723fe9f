/** etcd: a 3-member StatefulSet behind a headless Service, unless the stack gives an existing one. */
import * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";
import { ETCD_COMPACTION_ARGS, Ports } from "../../contract";
import { appLabels, probes, restrictedContainer } from "../common";
import { RuntimeNames } from "./args";
import { fqdn, metaOf, selectorOf, serviceAccountOf, type RuntimeScope } from "./scope";

const ETCD_MEMBERS = 3;

/** The runtime's etcd: its client URLs (comma-separated), and what waits for it to exist. */
export interface RuntimeEtcd {
  endpoints: string;
  /** The StatefulSet, when etcd runs in the cluster; none for an existing etcd. */
  deps: pulumi.Resource[];
}

/** Create etcd in the namespace, or point at the one `args.etcdEndpoints` names. */
export function createEtcd(scope: RuntimeScope): RuntimeEtcd {
  const { name, args, parent, namespace } = scope;
  let etcdEndpoints: string;
  const etcdDeps: pulumi.Resource[] = [];
  if (args.etcdEndpoints !== undefined) {
    etcdEndpoints = args.etcdEndpoints.join(",");
  } else {
    const members = Array.from({ length: ETCD_MEMBERS }, (_, i) => `${RuntimeNames.etcd}-${i}`);
    const peer = (m: string) => `http://${m}.${fqdn(RuntimeNames.etcd)}:${Ports.etcdPeer}`;
    etcdEndpoints = members
      .map((m) => `http://${m}.${fqdn(RuntimeNames.etcd)}:${Ports.etcdClient}`)
      .join(",");
    const etcdSa = serviceAccountOf(scope, "etcd", false);
    const etcdService = new k8s.core.v1.Service(
      `${name}-etcd-svc`,
      {
        metadata: metaOf(scope, "etcd", { name: RuntimeNames.etcd }),
        spec: {
          clusterIP: "None",
          // Members must find each other by DNS before they are ready.
          publishNotReadyAddresses: true,
          selector: selectorOf(scope, "etcd"),
          ports: [
            { name: "client", port: Ports.etcdClient },
            { name: "peer", port: Ports.etcdPeer },
          ],
        },
      },
      scope.inNs,
    );
    const etcd = new k8s.apps.v1.StatefulSet(
      `${name}-etcd`,
      {
        metadata: metaOf(scope, "etcd", { name: RuntimeNames.etcd }),
        spec: {
          serviceName: RuntimeNames.etcd,
          replicas: ETCD_MEMBERS,
          podManagementPolicy: "Parallel",
          selector: { matchLabels: selectorOf(scope, "etcd") },
          template: {
            metadata: { labels: appLabels(name, "etcd") },
            spec: {
              serviceAccountName: "shardworks-etcd",
              securityContext: { runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532 },
              containers: [
                {
                  name: "etcd",
                  image: args.etcdImage ?? "quay.io/coreos/etcd:v3.5.21",
                  command: ["etcd"],
                  args: [
                    "--name=$(POD_NAME)",
                    "--data-dir=/var/lib/etcd",
                    `--listen-client-urls=http://0.0.0.0:${Ports.etcdClient}`,
                    `--listen-peer-urls=http://0.0.0.0:${Ports.etcdPeer}`,
                    `--advertise-client-urls=http://$(POD_NAME).${fqdn(RuntimeNames.etcd)}:${Ports.etcdClient}`,
                    `--initial-advertise-peer-urls=http://$(POD_NAME).${fqdn(RuntimeNames.etcd)}:${Ports.etcdPeer}`,
                    `--initial-cluster=${members.map((m) => `${m}=${peer(m)}`).join(",")}`,
                    "--initial-cluster-state=new",
                    "--initial-cluster-token=shardworks",
                    ...ETCD_COMPACTION_ARGS,
                  ],
                  env: [
                    { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                  ],
                  ports: [
                    { name: "client", containerPort: Ports.etcdClient },
                    { name: "peer", containerPort: Ports.etcdPeer },
                  ],
                  ...probes(
                    { httpGet: { path: "/health", port: Ports.etcdClient } },
                    120,
                    // Serializable: a member without quorum is alive, just not ready.
                    { httpGet: { path: "/health?serializable=true", port: Ports.etcdClient } },
                  ),
                  resources: {
                    requests: { cpu: "200m", memory: "256Mi" },
                    limits: { cpu: "1", memory: "1Gi" },
                  },
                  securityContext: restrictedContainer,
                  volumeMounts: [{ name: "data", mountPath: "/var/lib/etcd" }],
                },
              ],
              ...(args.etcdStorage === "ephemeral"
                ? { volumes: [{ name: "data", emptyDir: {} }] }
                : {}),
            },
          },
          ...(args.etcdStorage === "ephemeral"
            ? {}
            : {
                volumeClaimTemplates: [
                  {
                    metadata: { name: "data" },
                    spec: {
                      accessModes: ["ReadWriteOnce"],
                      resources: { requests: { storage: "4Gi" } },
                    },
                  },
                ],
              }),
        },
      },
      { parent, dependsOn: [namespace, etcdSa, etcdService] },
    );
    etcdDeps.push(etcd);
  }

  return { endpoints: etcdEndpoints, deps: etcdDeps };
}
