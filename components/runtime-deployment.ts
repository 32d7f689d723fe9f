/**
 * The runtime services in `shardworks-system`: etcd (3 members, or an existing one), the
 * scheduler, a node agent per microVM node, the routing controller; each with its own
 * least-privilege ServiceAccount, probes, requests and limits, behind NetworkPolicies.
 * The node agent is the one privileged container of the platform (it opens /dev/kvm).
 * Each part is built in `runtime-deployment/`.
 */
import type * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { Ports } from "../contract";
import { createNetworkPolicies, createReaperRbac } from "./runtime-deployment/access";
import {
  RuntimeNames,
  validateEtcdEndpoints,
  validateNodeAgentDriver,
  validateSchedulerReplicas,
  type RuntimeDeploymentArgs,
} from "./runtime-deployment/args";
import { createEtcd } from "./runtime-deployment/etcd";
import { createNodeAgent } from "./runtime-deployment/node-agent";
import { createRoutingController } from "./runtime-deployment/routing";
import { createScheduler } from "./runtime-deployment/scheduler";
import { createRuntimeScope, fqdn, serviceAccountOf } from "./runtime-deployment/scope";
import { createTokenSecret } from "./runtime-deployment/tokens";
import { runtimeWorkloads } from "./runtime-deployment/workloads";

/** What {@link createRuntimeDeployment} made. */
export interface RuntimeDeploymentResult {
  namespace: k8s.core.v1.Namespace;
  etcdEndpoints: string;
  schedulerUrl: string;
  xdsHost: string;
  xdsPort: number;
}

/** Build the runtime's objects as children of `parent`. */
export function createRuntimeDeployment(
  name: string,
  args: RuntimeDeploymentArgs,
  parent: pulumi.Resource,
): RuntimeDeploymentResult {
  const scope = createRuntimeScope(name, args, parent);
  const tokenSecret = createTokenSecret(scope);
  const etcd = createEtcd(scope);
  const workloads = runtimeWorkloads(scope, {
    etcdEndpoints: etcd.endpoints,
    etcdDeps: etcd.deps,
    tokenSecret,
  });
  createScheduler(scope, workloads);
  createNodeAgent(scope, workloads);
  const routingSa = serviceAccountOf(scope, "routing", true);
  createReaperRbac(scope, routingSa);
  createRoutingController(scope, workloads, routingSa);
  createNetworkPolicies(scope);
  return {
    namespace: scope.namespace,
    etcdEndpoints: etcd.endpoints,
    schedulerUrl: `http://${fqdn(RuntimeNames.scheduler)}:${Ports.schedulerApi}`,
    xdsHost: fqdn(RuntimeNames.routing),
    xdsPort: Ports.xds,
  };
}

/** The runtime services of a platform, in `shardworks-system`. */
export class RuntimeDeployment extends pulumi.ComponentResource {
  /** `shardworks-system`. */
  readonly namespace: pulumi.Output<string>;
  /** Comma-separated etcd client URLs. */
  readonly etcdEndpoints: pulumi.Output<string>;
  /** In-cluster URL of the scheduler API. */
  readonly schedulerUrl: pulumi.Output<string>;
  /** In-cluster host of the routing controller's xDS server. */
  readonly xdsHost: pulumi.Output<string>;
  /** Port of the xDS server. */
  readonly xdsPort: pulumi.Output<number>;

  constructor(name: string, args: RuntimeDeploymentArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardworks:components:RuntimeDeployment", name, {}, opts);
    validateSchedulerReplicas(args.schedulerReplicas ?? 2);
    validateEtcdEndpoints(args.etcdEndpoints);
    validateNodeAgentDriver(args.nodeAgentDriver);
    const result = createRuntimeDeployment(name, args, this);
    this.namespace = result.namespace.metadata.name;
    this.etcdEndpoints = pulumi.output(result.etcdEndpoints);
    this.schedulerUrl = pulumi.output(result.schedulerUrl);
    this.xdsHost = pulumi.output(result.xdsHost);
    this.xdsPort = pulumi.output(result.xdsPort);
    this.registerOutputs({
      namespace: this.namespace,
      etcdEndpoints: this.etcdEndpoints,
      schedulerUrl: this.schedulerUrl,
      xdsHost: this.xdsHost,
      xdsPort: this.xdsPort,
    });
  }
}
