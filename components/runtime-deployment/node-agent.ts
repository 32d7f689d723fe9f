/** The node agent: a DaemonSet on the microVM nodes, the platform's one privileged container. */
import * as k8s from "@pulumi/kubernetes";
import { Env, MICROVM_KEY, NODE_AGENT_HOST_PATHS, Ports } from "../../contract";
import { appLabels } from "../common";
import { NodeAgentDriver, RuntimeNames } from "./args";
import { metaOf, selectorOf, serviceAccountOf, type RuntimeScope } from "./scope";
import { agentTokenEnv } from "./tokens";
import type { RuntimeWorkloads } from "./workloads";

/** Where the node agent keeps its state (a hostPath, so images survive pod restarts). */
const NODE_AGENT_DATA_DIR = NODE_AGENT_HOST_PATHS.state;

/** Create the node agent's ServiceAccount and DaemonSet (it opens /dev/kvm). */
export function createNodeAgent(scope: RuntimeScope, workloads: RuntimeWorkloads): void {
  const { name, args } = scope;
  const { runtimeEnv, tokenAnnotations } = workloads;
  const nodeAgentSa = serviceAccountOf(scope, "node-agent", false);
  const driver = args.nodeAgentDriver ?? NodeAgentDriver.Firecracker;
  // Only microVM drivers open /dev/kvm: a process-driver node (no KVM) must not need the device.
  const kvm = driver !== NodeAgentDriver.Process;
  const insecure = args.insecureRegistries ?? [];
  new k8s.apps.v1.DaemonSet(
    `${name}-node-agent`,
    {
      metadata: metaOf(scope, "node-agent", { name: RuntimeNames.nodeAgent }),
      spec: {
        selector: { matchLabels: selectorOf(scope, "node-agent") },
        template: {
          metadata: { labels: appLabels(name, "node-agent"), annotations: tokenAnnotations },
          spec: {
            serviceAccountName: "shardworks-node-agent",
            automountServiceAccountToken: false,
            nodeSelector: { [MICROVM_KEY]: "true" },
            tolerations: [{ key: MICROVM_KEY, operator: "Exists", effect: "NoSchedule" }],
            containers: [
              workloads.container({
                component: "node-agent",
                args: ["node-agent"],
                env: [
                  ...runtimeEnv,
                  // The agent API (logs, migration) demands the token the scheduler sends.
                  agentTokenEnv,
                  { name: Env.nodeName, valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
                  // The agent advertises its listen address to the scheduler: the pod IP.
                  { name: Env.listenHost, valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
                  { name: Env.listenPort, value: String(Ports.nodeAgent) },
                  { name: Env.driver, value: driver },
                  ...(insecure.length > 0
                    ? [{ name: Env.registryInsecure, value: insecure.join(",") }]
                    : []),
                  { name: Env.dataDir, value: NODE_AGENT_DATA_DIR },
                ],
                port: { name: "http", port: Ports.nodeAgent },
                probe: { httpGet: { path: "/healthz", port: Ports.nodeAgent } },
                // Requests only: the agent's sandboxes run inside this pod's cgroup (their own
                // memory and pids cgroups nest below it), so a pod limit would cap all of them
                // together below the capacity the node advertises. Each sandbox is limited by
                // the driver; the scheduler places against the node's capacity.
                resources: { requests: { cpu: "250m", memory: "256Mi" } },
                // Opening /dev/kvm and setting up jails/taps needs the device cgroup and
                // capabilities a device plugin would otherwise grant.
                // And root: the image runs as a non-root user, and a privileged container of a
                // non-root user can write neither cgroups (each sandbox's memory and pids
                // limits) nor /dev/kvm, nor set up namespaces for bubblewrap.
                securityContext: {
                  privileged: true,
                  runAsUser: 0,
                  runAsGroup: 0,
                  runAsNonRoot: false,
                },
                volumeMounts: [
                  ...(kvm ? [{ name: "kvm", mountPath: NODE_AGENT_HOST_PATHS.kvm }] : []),
                  { name: "state", mountPath: NODE_AGENT_DATA_DIR },
                ],
              }),
            ],
            volumes: [
              ...(kvm
                ? [
                    {
                      name: "kvm",
                      hostPath: { path: NODE_AGENT_HOST_PATHS.kvm, type: "CharDevice" },
                    },
                  ]
                : []),
              {
                name: "state",
                hostPath: { path: NODE_AGENT_HOST_PATHS.state, type: "DirectoryOrCreate" },
              },
            ],
          },
        },
      },
    },
    workloads.deps(nodeAgentSa),
  );
}
