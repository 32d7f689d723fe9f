/**
 * Names, labels and small builders shared by the components: the contract between the Pulumi
 * side and the runtime (taint key, annotation names, ports, env var names).
 */
import type * as k8s from "@pulumi/kubernetes";

/** Label and taint key of the bare-metal nodes that run microVMs. */
export const MICROVM_KEY = "shardworks.dev/microvm";
/** RFC 3339 expiry of a shard namespace or a JIT grant; the reapers delete what is past it. */
export const EXPIRES_AT_ANNOTATION = "shardworks.dev/expires-at";
/** Label carrying the shard name on everything a DevShard creates. */
export const SHARD_LABEL = "shardworks.dev/shard";
/** Prefix of a shard's namespace: shard `alice` lives in `shard-alice`. */
export const SHARD_NAMESPACE_PREFIX = "shard-";
/** Label (value `"true"`) marking a JIT grant's binding, so the access reaper and policy find it. */
export const JIT_LABEL = "shardworks.dev/jit";
/** Host paths the node agent mounts: the KVM device and its state directory. Nothing else may. */
export const NODE_AGENT_HOST_PATHS = { kvm: "/dev/kvm", state: "/var/lib/shardworks" } as const;
/** Pulumi's annotation to not wait for readiness (see the `skipAwait` args). */
export const SKIP_AWAIT_ANNOTATION = "pulumi.com/skipAwait";
/** Pulumi's annotation: how long the Kubernetes provider waits for an object to become ready. */
export const TIMEOUT_SECONDS_ANNOTATION = "pulumi.com/timeoutSeconds";
/** The namespace of the runtime services: the only one where a privileged container runs. */
export const SYSTEM_NAMESPACE = "shardworks-system";

/** Ports the runtime services listen on (container and Service ports). */
export const Ports = {
  schedulerApi: 8080,
  xds: 18000,
  nodeAgent: 7070,
  etcdClient: 2379,
  etcdPeer: 2380,
} as const;

/** Environment variables the runtime processes read. */
export const Env = {
  etcdEndpoints: "SHARDWORKS_ETCD_ENDPOINTS",
  platformToken: "SHARDWORKS_PLATFORM_TOKEN",
  /** Bearer token of the node agents' APIs: the scheduler sends it, the agents demand it. */
  agentToken: "SHARDWORKS_AGENT_TOKEN",
  /** The runtime version (the image tag): `/healthz` and `routers/<name>` report it. */
  runtimeVersion: "SHARDWORKS_RUNTIME_VERSION",
  /** The pod's IP (downward API), for addresses the pod advertises. */
  podIp: "SHARDWORKS_POD_IP",
  /** A routing controller replica's name in etcd (`routers/<name>`): its pod name. */
  routerName: "SHARDWORKS_ROUTER_NAME",
  /** Where the scheduler reaches a routing controller replica's ADS/CSDS. */
  advertiseAddress: "SHARDWORKS_ADVERTISE_ADDRESS",
  nodeName: "SHARDWORKS_NODE_NAME",
  /** Address to listen on (the node agent also advertises it, so it gets the pod IP). */
  listenHost: "SHARDWORKS_LISTEN_HOST",
  listenPort: "SHARDWORKS_LISTEN_PORT",
  driver: "SHARDWORKS_DRIVER",
  /** Node agent's work dirs, logs and image cache. */
  dataDir: "SHARDWORKS_DATA_DIR",
  /** Routing controller's baseline services, JSON `[{ name, destination: "host:port", hosts? }]`. */
  baselineServices: "SHARDWORKS_BASELINE_SERVICES",
} as const;

/** The role of a node group: system pods, or microVM sandboxes (needs KVM, so bare metal). */
export const NodeGroupRole = { System: "system", Microvm: "microvm" } as const;
/** One of {@link NodeGroupRole}. */
export type NodeGroupRole = (typeof NodeGroupRole)[keyof typeof NodeGroupRole];

/** `.metal` and `.metal-24xl`-style EC2 sizes: the ones that expose /dev/kvm. */
export const METAL_INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.metal(-\d+xl)?$/;

/** Recommended labels for an object of a component. */
export function appLabels(instance: string, component: string): Record<string, string> {
  return {
    "app.kubernetes.io/name": component,
    "app.kubernetes.io/instance": instance,
    "app.kubernetes.io/part-of": "shardworks",
    "app.kubernetes.io/managed-by": "pulumi",
  };
}

/** Labels that make Pod Security admission enforce `level` in a namespace, and warn at it. */
export function podSecurityLabels(level: "baseline" | "restricted"): Record<string, string> {
  return {
    "pod-security.kubernetes.io/enforce": level,
    "pod-security.kubernetes.io/warn": level,
  };
}

/** The skipAwait annotation when asked for, else nothing. */
export function awaitAnnotations(skipAwait: boolean | undefined): Record<string, string> {
  return skipAwait ? { [SKIP_AWAIT_ANNOTATION]: "true" } : {};
}

/** A container that can do nothing beyond its own process: no privilege, no capabilities. */
export const restrictedContainer: k8s.types.input.core.v1.SecurityContext = {
  privileged: false,
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ["ALL"] },
  seccompProfile: { type: "RuntimeDefault" },
};

/** What a probe checks: an HTTP GET, a gRPC health check or a TCP connect. */
export type ProbeCheck = Pick<k8s.types.input.core.v1.Probe, "httpGet" | "grpc" | "tcpSocket">;

/**
 * The startup, readiness and liveness probes every platform container uses. Liveness starts only
 * once the startup probe passed (within `startupSeconds`, checked every 2 s): a slow start on a
 * loaded node is waited for, not killed and restarted. Then ready is checked every 5 s, live
 * every 10 s, with `livenessCheck` when it differs from the readiness check.
 */
export function probes(
  check: ProbeCheck,
  startupSeconds: number,
  livenessCheck: ProbeCheck = check,
): Pick<k8s.types.input.core.v1.Container, "startupProbe" | "readinessProbe" | "livenessProbe"> {
  return {
    startupProbe: {
      ...livenessCheck,
      periodSeconds: 2,
      failureThreshold: Math.max(1, Math.ceil(startupSeconds / 2)),
    },
    readinessProbe: { ...check, periodSeconds: 5 },
    livenessProbe: { ...livenessCheck, periodSeconds: 10 },
  };
}
