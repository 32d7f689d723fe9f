/**
 * Routing between services, not only at the edge (ADR 0012): for each baseline service `X` with a
 * `selector`, Service `X` in the baseline namespace resolves to the gateway (`ExternalName`), and
 * Service `X-baseline` selects the app's pods. A caller's `http://X:8080` then goes through Envoy,
 * which sends it to the fork of the shard named by the request's routing key, or to
 * `X-baseline`. The app's pods are not touched; its services only propagate baggage.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { dnsLabel } from "../contract/model";
import { SHARD_NAMESPACE_PREFIX, SYSTEM_NAMESPACE } from "../contract";
import { SKIP_AWAIT_ANNOTATION, appLabels } from "./common";
import type { BaselineService } from "./dev-shard";

/** Suffix of the Service that selects a routed baseline service's own pods. */
export const BASELINE_SERVICE_SUFFIX = "-baseline";
/** Longest name of a routed service: `<name>-baseline` must still be a DNS label (63). */
export const MAX_ROUTED_SERVICE_NAME = 63 - BASELINE_SERVICE_SUFFIX.length;

/** Arguments of {@link BaselineRouting}. */
export interface BaselineRoutingArgs {
  /** The platform's baseline services; only those with a `selector` are routed in the cluster. */
  services: Record<string, BaselineService>;
  /** Namespace of the gateway (its Service `envoy` is where the names resolve to). */
  gatewayNamespace: string;
  /** Name of the gateway's Service. Default `envoy` (what `EnvoyGateway` creates). */
  gatewayServiceName?: string;
}

/** The baseline services routed inside the cluster: those that name their pods' labels. */
export function routedServices(
  services: Record<string, BaselineService>,
): [string, BaselineService & { selector: Record<string, string> }][] {
  return Object.entries(services).flatMap(([name, s]) =>
    s.selector === undefined ? [] : [[name, { ...s, selector: s.selector }]],
  );
}

/** The ports the gateway Service must expose so callers of routed services keep theirs. */
export function routedPorts(services: Record<string, BaselineService>): number[] {
  return [...new Set(routedServices(services).map(([, s]) => s.port))].sort((a, b) => a - b);
}

/** The in-cluster names of `name` in `namespace`, as callers spell them in `Host`. */
export function inClusterHosts(name: string, namespace: string): string[] {
  return [
    `${name}.${namespace}`,
    `${name}.${namespace}.svc`,
    `${name}.${namespace}.svc.cluster.local`,
  ];
}

/**
 * The routing controller's baseline: where the baseline route of each service goes, and the extra
 * host names its virtual host answers. A routed service goes to `<name>-baseline` (never to
 * `<name>`, which resolves to the gateway itself and would loop); any other to `<name>`.
 */
export function routingBaseline(
  services: Record<string, BaselineService>,
): { name: string; destination: string; hosts?: string[] }[] {
  return Object.entries(services).map(([name, s]) =>
    s.selector === undefined
      ? { name, destination: `${name}.${s.namespace}.svc.cluster.local:${s.port}` }
      : {
          name,
          destination: `${name}${BASELINE_SERVICE_SUFFIX}.${s.namespace}.svc.cluster.local:${s.port}`,
          hosts: inClusterHosts(name, s.namespace),
        },
  );
}

/**
 * Check the routed services: names short enough for `<name>-baseline`, no name taken twice in
 * a namespace (`a-baseline` next to `a`'s own), and no namespace of the platform or of a shard.
 * Errors name the service and the fix.
 */
export function validateBaselineRouting(
  services: Record<string, BaselineService>,
  gatewayNamespace: string,
): void {
  const taken = new Map<string, string>();
  for (const [name, s] of Object.entries(services)) taken.set(`${s.namespace}/${name}`, name);
  for (const [name, s] of routedServices(services)) {
    const path = `baseline.${name}`;
    if (name.length > MAX_ROUTED_SERVICE_NAME) {
      throw new pulumi.InputPropertyError({
        propertyPath: `${path}.selector`,
        reason: `service "${name}" is routed between services, so "${name}${BASELINE_SERVICE_SUFFIX}" must be a DNS label; use a name of at most ${MAX_ROUTED_SERVICE_NAME} characters, or drop the selector`,
      });
    }
    const other = taken.get(`${s.namespace}/${name}${BASELINE_SERVICE_SUFFIX}`);
    if (other !== undefined) {
      throw new pulumi.InputPropertyError({
        propertyPath: `${path}.selector`,
        reason: `Service "${name}${BASELINE_SERVICE_SUFFIX}" in namespace "${s.namespace}" would select "${name}"'s pods, but "${other}" is a baseline service of that name; rename one of them`,
      });
    }
    const reserved =
      s.namespace === gatewayNamespace
        ? "the gateway's"
        : s.namespace === SYSTEM_NAMESPACE
          ? "the runtime's"
          : s.namespace.startsWith(SHARD_NAMESPACE_PREFIX)
            ? "a shard's"
            : s.namespace.startsWith("kube-")
              ? "a Kubernetes system"
              : undefined;
    if (reserved !== undefined) {
      throw new pulumi.InputPropertyError({
        propertyPath: `${path}.namespace`,
        reason: `"${s.namespace}" is ${reserved} namespace; run service "${name}" in the app's own namespace`,
      });
    }
    const labels = Object.keys(s.selector);
    if (labels.length === 0) {
      throw new pulumi.InputPropertyError({
        propertyPath: `${path}.selector`,
        reason: `is empty: give the labels of "${name}"'s pods, e.g. {app: ${name}}, or leave it out to route "${name}" at the edge only`,
      });
    }
    if (!dnsLabel.safeParse(s.namespace).success) {
      throw new pulumi.InputPropertyError({
        propertyPath: `${path}.namespace`,
        reason: `"${s.namespace}" is not a namespace name (a DNS label)`,
      });
    }
  }
}

/** What {@link createBaselineRouting} made. */
export interface BaselineRoutingResult {
  /** `ExternalName` Services `<name>`, by service. */
  names: Record<string, k8s.core.v1.Service>;
  /** Services `<name>-baseline` selecting the app's pods, by service. */
  baselines: Record<string, k8s.core.v1.Service>;
}

/** Build the two Services of each routed baseline service as children of `parent`. */
export function createBaselineRouting(
  name: string,
  args: BaselineRoutingArgs,
  parent: pulumi.Resource,
): BaselineRoutingResult {
  const gatewayHost = `${args.gatewayServiceName ?? "envoy"}.${args.gatewayNamespace}.svc.cluster.local`;
  const names: Record<string, k8s.core.v1.Service> = {};
  const baselines: Record<string, k8s.core.v1.Service> = {};
  for (const [service, s] of routedServices(args.services)) {
    const labels = { ...appLabels(name, "baseline-routing"), "shardworks.dev/routes": service };
    names[service] = new k8s.core.v1.Service(
      `${name}-${service}`,
      {
        metadata: {
          name: service,
          namespace: s.namespace,
          labels,
          annotations: { "shardworks.dev/routed-by": "gateway" },
        },
        spec: {
          type: "ExternalName",
          externalName: gatewayHost,
          // Informational for ExternalName (DNS carries no port); the gateway Service has it.
          ports: [{ name: "http", port: s.port, protocol: "TCP" }],
        },
      },
      { parent },
    );
    baselines[service] = new k8s.core.v1.Service(
      `${name}-${service}${BASELINE_SERVICE_SUFFIX}`,
      {
        metadata: {
          name: `${service}${BASELINE_SERVICE_SUFFIX}`,
          namespace: s.namespace,
          labels,
          // The app is the team's, deployed before or after the platform: not awaited here.
          annotations: { [SKIP_AWAIT_ANNOTATION]: "true" },
        },
        spec: {
          selector: s.selector,
          ports: [{ name: "http", port: s.port, targetPort: s.port, protocol: "TCP" }],
        },
      },
      { parent },
    );
  }
  return { names, baselines };
}

/** Routing between baseline services through the gateway (ADR 0012). */
export class BaselineRouting extends pulumi.ComponentResource {
  /** Names of the routed services. */
  readonly routed: pulumi.Output<string[]>;

  constructor(name: string, args: BaselineRoutingArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardworks:components:BaselineRouting", name, {}, opts);
    validateBaselineRouting(args.services, args.gatewayNamespace);
    const result = createBaselineRouting(name, args, this);
    this.routed = pulumi.output(Object.keys(result.names).sort());
    this.registerOutputs({ routed: this.routed });
  }
}
