/**
 * The contract of {@link RuntimeDeployment}: its arguments, the drivers and object names they
 * refer to, and the validators the constructor runs first.
 */
import * as pulumi from "@pulumi/pulumi";
import type { BaselineService } from "../dev-shard";

/** Arguments of {@link RuntimeDeployment}. */
export interface RuntimeDeploymentArgs {
  /** Tag of the runtime image, e.g. `"0.1.0"`. */
  version: pulumi.Input<string>;
  /** Repository of the runtime image (scheduler, node agent, routing controller run from it). */
  imageRepository: string;
  /**
   * The runtime image itself, e.g. pinned by digest (`repo@sha256:…`, what
   * `npm run images -- build runtime` prints); overrides `<imageRepository>:<version>`. The
   * processes still report `version`. Default `<imageRepository>:<version>`.
   */
  image?: pulumi.Input<string>;
  /** etcd image for the StatefulSet. Default `quay.io/coreos/etcd:v3.5.21`. */
  etcdImage?: string;
  /**
   * Storage of the in-cluster etcd members: `persistent` (a 4Gi PersistentVolumeClaim each, needs
   * a storage class) or `ephemeral` (an emptyDir: lost with the pod; for clusters without a volume
   * provisioner, e.g. the local testbed). Default `persistent`.
   */
  etcdStorage?: "persistent" | "ephemeral";
  /** Endpoints of an existing etcd; when given, no etcd StatefulSet is created. */
  etcdEndpoints?: string[];
  /** Scheduler API replicas, at least 2. Default 2. */
  schedulerReplicas?: number;
  /** Bearer token of the scheduler API (stored in a Secret). */
  platformToken: pulumi.Input<string>;
  /** Namespace of the Envoy gateway (allowed to reach the xDS server). */
  gatewayNamespace: string;
  /**
   * Sandbox driver of the node agents: `firecracker` (microVMs, needs KVM), `qemu` (microVMs,
   * KVM or slow TCG) or `process` (bubblewrap, NOT hardware-isolated). Default `firecracker`.
   */
  nodeAgentDriver?: NodeAgentDriver;
  /**
   * Registries (`host[:port]`) the node agents pull platform images from over plain HTTP
   * (`SHARDWORKS_REGISTRY_INSECURE`); loopback ones always are. Default none.
   */
  insecureRegistries?: string[];
  /**
   * The baseline services shards may fork (service → image, port, namespace, selector); the
   * routing controller routes to `<service>.<namespace>.svc.cluster.local:<port>`, or to
   * `<service>-baseline` for a service with a `selector` (see {@link baselineDestinations}).
   * Default none.
   */
  baselineServices?: pulumi.Input<Record<string, BaselineService>>;
  /**
   * Do not wait for readiness (annotates workloads, Services and the namespace
   * `pulumi.com/skipAwait: "true"`): for clusters without kubelets, e.g. the local testbed.
   * Default false.
   */
  skipAwait?: boolean;
}

/** Sandbox drivers a node agent can run (see `runtime/node-agent/drivers`). */
export const NodeAgentDriver = {
  Firecracker: "firecracker",
  Qemu: "qemu",
  Process: "process",
} as const;
/** One of {@link NodeAgentDriver}. */
export type NodeAgentDriver = (typeof NodeAgentDriver)[keyof typeof NodeAgentDriver];

/** Names of the Kubernetes objects other parts address. */
export const RuntimeNames = {
  etcd: "shardworks-etcd",
  scheduler: "shardworks-scheduler",
  nodeAgent: "shardworks-node-agent",
  routing: "shardworks-routing",
  tokenSecret: "shardworks-platform-token",
} as const;

/** Check the scheduler replica count: at least 2 (the API must survive a pod loss). */
export function validateSchedulerReplicas(replicas: number): void {
  if (!Number.isInteger(replicas) || replicas < 2) {
    throw new pulumi.InputPropertyError({
      propertyPath: "schedulerReplicas",
      reason: `${replicas} is too few; the scheduler runs at least 2 replicas`,
    });
  }
}

/** Check the node agent driver is one the runtime has. */
export function validateNodeAgentDriver(driver: string | undefined): void {
  const known: readonly string[] = Object.values(NodeAgentDriver);
  if (driver !== undefined && !known.includes(driver)) {
    throw new pulumi.InputPropertyError({
      propertyPath: "nodeAgentDriver",
      reason: `${JSON.stringify(driver)} is not a driver; use one of ${known.join(", ")}`,
    });
  }
}

/** Check external etcd endpoints: a non-empty list of http(s) URLs. */
export function validateEtcdEndpoints(endpoints: string[] | undefined): void {
  if (endpoints === undefined) return;
  if (endpoints.length === 0) {
    throw new pulumi.InputPropertyError({
      propertyPath: "etcdEndpoints",
      reason: "is empty; leave it out to run etcd in the cluster",
    });
  }
  endpoints.forEach((e, i) => {
    if (!/^https?:\/\/[^/\s]+$/.test(e)) {
      throw new pulumi.InputPropertyError({
        propertyPath: `etcdEndpoints[${i}]`,
        reason: `${JSON.stringify(e)} is not an etcd URL like "https://etcd-0:2379"`,
      });
    }
  });
}
