/**
 * The edge: Envoy behind a Network Load Balancer, configured only over ADS by the routing
 * controller (its bootstrap ConfigMap names nothing else), admin on 127.0.0.1, kept available by
 * a PodDisruptionBudget and scaled by an HPA.
 */
import { createHash } from "node:crypto";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { dnsLabel } from "../contract/model";
import { envoyBootstrap, envoyBootstrapOptionsSchema, GATEWAY_NODE_ID, Ports } from "../contract";
import {
  appLabels,
  awaitAnnotations,
  podSecurityLabels,
  probes,
  restrictedContainer,
} from "./common";

/** How the gateway Service is exposed. */
export const GatewayServiceType = {
  LoadBalancer: "LoadBalancer",
  NodePort: "NodePort",
  ClusterIP: "ClusterIP",
} as const;
/** One of {@link GatewayServiceType}. */
export type GatewayServiceType = (typeof GatewayServiceType)[keyof typeof GatewayServiceType];

/** Arguments of {@link EnvoyGateway}. */
export interface EnvoyGatewayArgs {
  /** Namespace to create for the gateway. Default `shardworks-gateway`. */
  namespace?: string;
  /** Envoy image. Default `envoyproxy/envoy:v1.40.0` (the release the tests run). */
  image?: string;
  /** Minimum (and initial) replicas. Default 2. */
  replicas?: number;
  /** Most replicas the HPA may scale to; at least `replicas`. Default 10. */
  maxReplicas?: number;
  /** Host of the routing controller's xDS server. */
  adsHost: pulumi.Input<string>;
  /** Port of the routing controller's xDS server. */
  adsPort: pulumi.Input<number>;
  /**
   * Port of the HTTP listener the routing controller sends over LDS (its address and port are the
   * controller's `--ingress-host` / `--ingress-port`; keep them equal). Default 8080.
   */
  listenerPort?: number;
  /** Admin port. Default 9901. */
  adminPort?: number;
  /**
   * Address the admin interface binds. Default 127.0.0.1: nothing outside the pod reaches it
   * (the admin API can drain listeners and quit Envoy). An IP address.
   */
  adminHost?: string;
  /** Service type. Default `LoadBalancer` (an NLB on AWS). */
  serviceType?: GatewayServiceType;
  /** Internal NLB (VPC only) instead of internet-facing. Default false. */
  internal?: boolean;
  /**
   * Ports of the baseline services routed between services (ADR 0012): the Service exposes each
   * of them too, to the same listener, so a caller of `http://checkout:8080` (a name that
   * resolves to this Service) keeps its port. Default none (port 80 only).
   */
  routedPorts?: number[];
  /**
   * Do not wait for readiness (annotates the Deployment, Service, HPA, PDB and namespace
   * `pulumi.com/skipAwait: "true"`): for clusters without kubelets or load balancers, e.g.
   * the local testbed. Default false.
   */
  skipAwait?: boolean;
}

/** Envoy node id of the gateway: the routing controller keys its snapshot by it. */
export { GATEWAY_NODE_ID };

/** Check replica bounds: 1 ≤ replicas ≤ maxReplicas. */
export function validateGatewayReplicas(replicas: number, maxReplicas: number): void {
  if (!Number.isInteger(replicas) || replicas < 1) {
    throw new pulumi.InputPropertyError({
      propertyPath: "replicas",
      reason: `${replicas} must be a whole number of at least 1`,
    });
  }
  if (!Number.isInteger(maxReplicas) || maxReplicas < replicas) {
    throw new pulumi.InputPropertyError({
      propertyPath: "maxReplicas",
      reason: `${maxReplicas} must be at least replicas (${replicas})`,
    });
  }
}

/** Check that the admin port is not the listener port. */
export function validateGatewayPorts(listenerPort: number, adminPort: number): void {
  for (const [path, p] of [
    ["listenerPort", listenerPort],
    ["adminPort", adminPort],
  ] as const) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) {
      throw new pulumi.InputPropertyError({
        propertyPath: path,
        reason: `${p} is not a port (1-65535)`,
      });
    }
  }
  if (listenerPort === adminPort) {
    throw new pulumi.InputPropertyError({
      propertyPath: "adminPort",
      reason: `${adminPort} is also the listenerPort; use another port`,
    });
  }
}

/** Check the routed ports: each a port (1-65535), none twice. */
export function validateRoutedPorts(ports: readonly number[]): void {
  ports.forEach((p, i) => {
    if (!Number.isInteger(p) || p < 1 || p > 65535) {
      throw new pulumi.InputPropertyError({
        propertyPath: `routedPorts[${i}]`,
        reason: `${p} is not a port (1-65535)`,
      });
    }
    if (ports.indexOf(p) !== i) {
      throw new pulumi.InputPropertyError({
        propertyPath: `routedPorts[${i}]`,
        reason: `${p} is listed twice`,
      });
    }
  });
}

/** Check the admin address with the bootstrap's own schema (an IP address). */
export function validateGatewayAdminHost(adminHost: string): void {
  const parsed = envoyBootstrapOptionsSchema.shape.adminHost.safeParse(adminHost);
  if (!parsed.success) {
    throw new pulumi.InputPropertyError({
      propertyPath: "adminHost",
      reason: `${JSON.stringify(adminHost)} ${parsed.error.issues[0]?.message ?? "is invalid"}`,
    });
  }
}

/** Namespaces the gateway must not take over: Kubernetes' own, the runtime's and the shards'. */
export const RESERVED_NAMESPACES = [
  "kube-system",
  "kube-public",
  "kube-node-lease",
  "default",
  "shardworks-system",
];

/** Check the gateway namespace: a DNS label that is not reserved and not a shard's (`shard-*`). */
export function validateGatewayNamespace(namespace: string): void {
  const reason = !dnsLabel.safeParse(namespace).success
    ? "must be a DNS label (lowercase letters, digits, '-', at most 63)"
    : RESERVED_NAMESPACES.includes(namespace)
      ? 'is reserved; use a namespace of its own, e.g. "shardworks-gateway"'
      : namespace.startsWith("shard-")
        ? 'starts with "shard-", the prefix of shard namespaces; use e.g. "shardworks-gateway"'
        : undefined;
  if (reason !== undefined) {
    throw new pulumi.InputPropertyError({
      propertyPath: "namespace",
      reason: `${JSON.stringify(namespace)} ${reason}`,
    });
  }
}

/** What {@link createEnvoyGateway} made. */
export interface EnvoyGatewayResult {
  namespace: k8s.core.v1.Namespace;
  service: k8s.core.v1.Service;
  address: pulumi.Output<string>;
}

/** Build the gateway's objects as children of `parent`. */
export function createEnvoyGateway(
  name: string,
  args: EnvoyGatewayArgs,
  parent: pulumi.Resource,
): EnvoyGatewayResult {
  const ns = args.namespace ?? "shardworks-gateway";
  const listenerPort = args.listenerPort ?? Ports.gatewayListener;
  const adminPort = args.adminPort ?? Ports.envoyAdmin;
  const labels = appLabels(name, "gateway");
  const selector = { "app.kubernetes.io/name": "gateway", "app.kubernetes.io/instance": name };
  const skip = awaitAnnotations(args.skipAwait);
  const deploymentName = "envoy";

  const namespace = new k8s.core.v1.Namespace(
    `${name}-namespace`,
    {
      metadata: {
        name: ns,
        labels: {
          ...labels,
          ...podSecurityLabels("restricted"),
        },
        annotations: skip,
      },
    },
    { parent },
  );
  const inNs = { parent, dependsOn: [namespace] };
  const meta = (objectName: string, annotations: Record<string, string> = skip) => ({
    name: objectName,
    namespace: ns,
    labels,
    annotations,
  });

  const bootstrap = pulumi.all([args.adsHost, args.adsPort]).apply(([adsHost, adsPort]) =>
    JSON.stringify(
      envoyBootstrap({
        nodeId: GATEWAY_NODE_ID,
        cluster: GATEWAY_NODE_ID,
        adsHost,
        adsPort,
        adminPort,
        adminHost: args.adminHost ?? "127.0.0.1",
      }),
      null,
      2,
    ),
  );
  const config = new k8s.core.v1.ConfigMap(
    `${name}-bootstrap`,
    { metadata: meta("envoy-bootstrap", {}), data: { "envoy.json": bootstrap } },
    inNs,
  );

  const deployment = new k8s.apps.v1.Deployment(
    `${name}-envoy`,
    {
      metadata: meta(deploymentName),
      spec: {
        // No `replicas`: the HPA owns the count (from `minReplicas`); setting it here would
        // reset the HPA's choice on every `pulumi up`.
        selector: { matchLabels: selector },
        template: {
          metadata: {
            labels,
            // Roll the pods when the bootstrap changes.
            annotations: {
              "shardworks.dev/bootstrap": bootstrap.apply((b) =>
                createHash("sha256").update(b).digest("hex"),
              ),
            },
          },
          spec: {
            automountServiceAccountToken: false,
            securityContext: { runAsNonRoot: true, runAsUser: 101, runAsGroup: 101 },
            containers: [
              {
                name: "envoy",
                image: args.image ?? "envoyproxy/envoy:v1.40.0",
                // One process per pod: no hot restart, so no shared memory to set up.
                args: [
                  "-c",
                  "/etc/envoy/envoy.json",
                  "--log-level",
                  "info",
                  "--disable-hot-restart",
                ],
                ports: [{ name: "http", containerPort: listenerPort }],
                // The listener exists only once LDS delivered it: ready means configured.
                ...probes({ tcpSocket: { port: listenerPort } }, 120),
                resources: {
                  requests: { cpu: "250m", memory: "256Mi" },
                  limits: { cpu: "2", memory: "1Gi" },
                },
                securityContext: restrictedContainer,
                volumeMounts: [{ name: "bootstrap", mountPath: "/etc/envoy", readOnly: true }],
              },
            ],
            volumes: [{ name: "bootstrap", configMap: { name: "envoy-bootstrap" } }],
          },
        },
      },
    },
    { parent, dependsOn: [namespace, config] },
  );

  const service = new k8s.core.v1.Service(
    `${name}-service`,
    {
      metadata: meta("envoy", {
        ...skip,
        "service.beta.kubernetes.io/aws-load-balancer-type": "external",
        "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": args.internal
          ? "internal"
          : "internet-facing",
      }),
      spec: {
        type: args.serviceType ?? GatewayServiceType.LoadBalancer,
        selector,
        ports: [
          { name: "http", port: 80, targetPort: listenerPort, protocol: "TCP" },
          // Every port of a routed service leads to the one listener (Envoy strips it from Host).
          ...(args.routedPorts ?? [])
            .filter((p) => p !== 80)
            .map((p) => ({
              name: `http-${p}`,
              port: p,
              targetPort: listenerPort,
              protocol: "TCP",
            })),
        ],
      },
    },
    inNs,
  );

  new k8s.policy.v1.PodDisruptionBudget(
    `${name}-pdb`,
    { metadata: meta("envoy"), spec: { maxUnavailable: 1, selector: { matchLabels: selector } } },
    inNs,
  );
  new k8s.autoscaling.v2.HorizontalPodAutoscaler(
    `${name}-hpa`,
    {
      metadata: meta("envoy"),
      spec: {
        scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: deploymentName },
        minReplicas: args.replicas ?? 2,
        maxReplicas: args.maxReplicas ?? 10,
        metrics: [
          {
            type: "Resource",
            resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 70 } },
          },
        ],
      },
    },
    { parent, dependsOn: [deployment] },
  );

  // The NLB's name once AWS gave one; before that (or without a load balancer) the in-cluster name.
  const address = service.status.apply((status) => {
    const ingress = status?.loadBalancer?.ingress?.[0];
    return ingress?.hostname ?? ingress?.ip ?? `envoy.${ns}.svc.cluster.local:80`;
  });
  return { namespace, service, address };
}

/** Envoy at the edge, configured over ADS by the routing controller. */
export class EnvoyGateway extends pulumi.ComponentResource {
  /** The gateway's namespace. */
  readonly namespace: pulumi.Output<string>;
  /** Load balancer host name (or IP); the in-cluster name until there is one. */
  readonly address: pulumi.Output<string>;

  constructor(name: string, args: EnvoyGatewayArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardworks:components:EnvoyGateway", name, {}, opts);
    validateGatewayNamespace(args.namespace ?? "shardworks-gateway");
    validateGatewayReplicas(args.replicas ?? 2, args.maxReplicas ?? 10);
    validateGatewayPorts(
      args.listenerPort ?? Ports.gatewayListener,
      args.adminPort ?? Ports.envoyAdmin,
    );
    validateRoutedPorts(args.routedPorts ?? []);
    validateGatewayAdminHost(args.adminHost ?? "127.0.0.1");
    const result = createEnvoyGateway(name, args, this);
    this.namespace = result.namespace.metadata.name;
    this.address = result.address;
    this.registerOutputs({ namespace: this.namespace, address: this.address });
  }
}
