/**
 * The routing controller: xDS for the gateway plus the reapers (TTL and JIT grants), replicated;
 * it is told the baseline services it routes to.
 */
import type * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { routingBaseline } from "../baseline-routing";
import { Env, Ports } from "../../contract";
import type { BaselineService } from "../dev-shard";
import { RuntimeNames } from "./args";
import type { RuntimeScope } from "./scope";
import type { RuntimeWorkloads } from "./workloads";

/**
 * The routing controller's baseline: each service at its in-cluster Service address, or, for a
 * service routed between services (a `selector`, ADR 0012), at `<service>-baseline` with the
 * in-cluster host names its virtual host answers.
 */
export function baselineDestinations(
  services: Record<string, BaselineService>,
): { name: string; destination: string; hosts?: string[] }[] {
  return routingBaseline(services);
}

/** Create the routing controller's Deployment and Service, run as `routingSa`. */
export function createRoutingController(
  scope: RuntimeScope,
  workloads: RuntimeWorkloads,
  routingSa: k8s.core.v1.ServiceAccount,
): void {
  const { args } = scope;
  const { runtimeEnv, listenAnywhere } = workloads;
  workloads.service("routing", {
    objectName: RuntimeNames.routing,
    replicas: 2,
    serviceAccount: routingSa,
    // The reapers delete expired grants through the Kubernetes API.
    apiToken: true,
    container: {
      component: "routing",
      args: ["routing-controller"],
      env: [
        ...runtimeEnv,
        listenAnywhere,
        { name: Env.listenPort, value: String(Ports.xds) },
        // Each replica registers routers/<pod name> at <pod IP>:<port>: the scheduler asks every
        // replica's CSDS (the rollout's xds-acked gate, `shardworks xds clients`).
        { name: Env.podIp, valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
        { name: Env.routerName, valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
        // The pod IP alone: the process adds its port (and brackets an IPv6 address).
        { name: Env.advertiseAddress, value: `$(${Env.podIp})` },
        {
          name: Env.baselineServices,
          value: pulumi
            .output(args.baselineServices ?? {})
            .apply((services) => JSON.stringify(baselineDestinations(services))),
        },
      ],
      port: { name: "grpc-xds", port: Ports.xds, appProtocol: "grpc" },
      // grpc.health.v1 on the ADS port: ready once the xDS server serves.
      probe: { grpc: { port: Ports.xds } },
    },
  });
}
