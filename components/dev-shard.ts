/**
 * A developer's shard: its own namespace holding forks of the baseline services it changes,
 * fenced by a quota, a LimitRange and a default-deny NetworkPolicy (only the gateway gets in),
 * owned through a RoleBinding, and stamped with a TTL.
 */
import { createHash } from "node:crypto";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { ClusterRoleName } from "./access-control";
import { MAX_ROUTING_KEY_LENGTH } from "../contract/model";
import { EXPIRES_AT_ANNOTATION, SHARD_LABEL, SHARD_NAMESPACE_PREFIX } from "../contract";
import {
  TIMEOUT_SECONDS_ANNOTATION,
  WAIT_FOR_ANNOTATION,
  appLabels,
  podSecurityLabels,
} from "./common";
import type { BaselineService, DevShardArgs } from "./dev-shard/args";
import { containerLimits, containerRequests } from "./dev-shard/quantities";
import {
  DEFAULT_READY_TIMEOUT_SECONDS,
  baselineOf,
  forkReadiness,
  validateForks,
  validateForksAgainstBaseline,
  validateReadyTimeout,
  validateShardName,
  validateTtl,
} from "./dev-shard/validate";

export { MAX_SHARD_TTL_SECONDS } from "../contract/model";
export type {
  BaselineService,
  DevShardArgs,
  ForkSpec,
  ShardQuota,
  ShardRegistrationInput,
} from "./dev-shard/args";
export {
  containerLimits,
  containerRequests,
  minQuantity,
  quantityValue,
} from "./dev-shard/quantities";
export {
  DEFAULT_READY_TIMEOUT_SECONDS,
  MAX_READY_TIMEOUT_SECONDS,
  READINESS_PATH,
  baselineOf,
  forkReadiness,
  validateForks,
  validateForksAgainstBaseline,
  validateReadyTimeout,
  validateShardName,
  validateTtl,
} from "./dev-shard/validate";

/** What {@link createDevShard} made. */
export interface DevShardResult {
  namespace: k8s.core.v1.Namespace;
  namespaceName: string;
  routingKey: string;
  expiresAt: string;
  forkDestinations: pulumi.Output<Record<string, string>>;
  services: k8s.core.v1.Service[];
  deployments: k8s.apps.v1.Deployment[];
  registration?: pulumi.Resource;
}

/**
 * The routing key a shard gets when none is configured: `shard-<name>`, or, where that would pass
 * the routing-key limit (Envoy's regex budget, see ADR 0008), a prefix of it plus a short hash of
 * the whole name, so that it stays unique and stable.
 */
export function defaultRoutingKey(shardName: string): string {
  const key = `${SHARD_NAMESPACE_PREFIX}${shardName}`;
  if (key.length <= MAX_ROUTING_KEY_LENGTH) return key;
  const hash = createHash("sha256").update(shardName).digest("hex").slice(0, 6);
  return `${key.slice(0, MAX_ROUTING_KEY_LENGTH - hash.length - 1)}-${hash}`;
}

/** Build the shard's objects as children of `parent`. */
export function createDevShard(
  name: string,
  args: DevShardArgs,
  parent: pulumi.Resource,
): DevShardResult {
  const ns = `${SHARD_NAMESPACE_PREFIX}${args.shardName}`;
  const routingKey = args.routingKey ?? defaultRoutingKey(args.shardName);
  const expiresAt = new Date(
    (args.now ?? new Date()).getTime() + args.ttlSeconds * 1000,
  ).toISOString();
  const quota = args.quota ?? { cpu: "4", memory: "8Gi", pods: 20 };
  const labels = { ...appLabels(name, "dev-shard"), [SHARD_LABEL]: args.shardName };
  // The Kubernetes provider waits for each fork Deployment (its pods Ready) at most this long;
  // past it `pulumi up` fails with the pods' errors.
  const awaitFork = {
    [TIMEOUT_SECONDS_ANNOTATION]: String(args.readyTimeoutSeconds ?? DEFAULT_READY_TIMEOUT_SECONDS),
  };
  // A fork Service is awaited until it has its cluster IP, not by the provider's Service awaiter:
  // that one waits 10 s after the last Endpoints change (two thirds of a shard's `pulumi up`), and
  // proves nothing more here, since the Service selects exactly the fork Deployment's pod labels
  // and that Deployment is awaited Ready (ADR 0018).
  const awaitForkService = { ...awaitFork, [WAIT_FOR_ANNOTATION]: "jsonpath={.spec.clusterIP}" };

  const namespace = new k8s.core.v1.Namespace(
    `${name}-namespace`,
    {
      metadata: {
        name: ns,
        labels: {
          ...labels,
          // Forks are the developer's images: hold them to the "baseline" Pod Security level.
          ...podSecurityLabels("baseline"),
        },
        annotations: {
          [EXPIRES_AT_ANNOTATION]: expiresAt,
          "shardworks.dev/owner": args.owner,
        },
      },
    },
    // The expiry is fixed when the shard is created: recomputing it from "now" on every run made
    // each `pulumi preview`/`up` after the first report an update of the namespace.
    { parent, ignoreChanges: [`metadata.annotations["${EXPIRES_AT_ANNOTATION}"]`] },
  );
  const inNs = { parent, dependsOn: [namespace] };
  const meta = (extra: Record<string, string> = {}) => ({
    namespace: ns,
    labels,
    annotations: extra,
  });

  new k8s.core.v1.ResourceQuota(
    `${name}-quota`,
    {
      metadata: { ...meta(), name: "shard-quota" },
      spec: {
        hard: {
          "requests.cpu": quota.cpu,
          "requests.memory": quota.memory,
          "limits.cpu": quota.cpu,
          "limits.memory": quota.memory,
          pods: String(quota.pods),
          // Shard owners reach the world only through the gateway: no Service of their own
          // may open a node port or a cloud load balancer.
          "services.loadbalancers": "0",
          "services.nodeports": "0",
        },
      },
    },
    inNs,
  );
  const limits = containerLimits(quota);
  const requests = containerRequests(quota);
  // With a quota on limits, every container needs limits: the LimitRange gives defaults.
  new k8s.core.v1.LimitRange(
    `${name}-limits`,
    {
      metadata: { ...meta(), name: "shard-limits" },
      spec: {
        limits: [
          {
            type: "Container",
            // Never above `max` (the API server rejects such a LimitRange): a quota below 500m
            // or 512Mi lowers the defaults to the quota.
            default: limits,
            defaultRequest: requests,
            max: { cpu: quota.cpu, memory: quota.memory },
          },
        ],
      },
    },
    inNs,
  );
  new k8s.networking.v1.NetworkPolicy(
    `${name}-default-deny`,
    {
      metadata: { ...meta(), name: "default-deny-ingress" },
      spec: { podSelector: {}, policyTypes: ["Ingress"] },
    },
    inNs,
  );
  new k8s.networking.v1.NetworkPolicy(
    `${name}-allow-gateway`,
    {
      metadata: { ...meta(), name: "allow-from-gateway" },
      spec: {
        podSelector: {},
        policyTypes: ["Ingress"],
        ingress: [
          {
            from: [
              {
                namespaceSelector: {
                  matchLabels: { "kubernetes.io/metadata.name": args.gatewayNamespace },
                },
              },
              // The shard's own pods: a fork calls another fork of the same shard by its short
              // name directly (ADR 0012), e.g. bob's checkout → bob's payments.
              { podSelector: {} },
            ],
          },
        ],
      },
    },
    inNs,
  );
  const ownerRef = {
    apiGroup: "rbac.authorization.k8s.io",
    kind: "ClusterRole",
    name: ClusterRoleName.ShardOwner,
  };
  new k8s.rbac.v1.RoleBinding(
    `${name}-owner`,
    {
      metadata: { ...meta(), name: "shard-owner" },
      roleRef: ownerRef,
      subjects: [{ kind: "User", name: args.owner, apiGroup: "rbac.authorization.k8s.io" }],
    },
    inNs,
  );
  const agents = new k8s.core.v1.ServiceAccount(
    `${name}-agents`,
    { metadata: { ...meta(), name: "shard-agents" }, automountServiceAccountToken: false },
    inNs,
  );
  new k8s.rbac.v1.RoleBinding(
    `${name}-agents-owner`,
    {
      metadata: { ...meta(), name: "shard-agents-owner" },
      roleRef: ownerRef,
      subjects: [{ kind: "ServiceAccount", name: "shard-agents", namespace: ns }],
    },
    { parent, dependsOn: [namespace, agents] },
  );

  const baseline = pulumi.output(args.baseline);
  const services: k8s.core.v1.Service[] = [];
  const deployments: k8s.apps.v1.Deployment[] = [];
  const destinations: Record<string, pulumi.Output<string>> = {};
  for (const [service, fork] of Object.entries(args.forks ?? {})) {
    const base = baseline.apply((b) => baselineOf(service, b));
    const port = base.apply((b) => fork.port ?? b.port);
    const forkLabels = { ...labels, "shardworks.dev/fork-of": service };
    const selector = { [SHARD_LABEL]: args.shardName, "shardworks.dev/fork-of": service };
    deployments.push(
      new k8s.apps.v1.Deployment(
        `${name}-fork-${service}`,
        {
          metadata: { name: service, namespace: ns, labels: forkLabels, annotations: awaitFork },
          spec: {
            replicas: fork.replicas ?? 1,
            selector: { matchLabels: selector },
            template: {
              metadata: { labels: forkLabels },
              spec: {
                serviceAccountName: "shard-agents",
                automountServiceAccountToken: false,
                containers: [
                  {
                    name: service,
                    image: fork.image ?? base.image,
                    env: Object.entries(fork.env ?? {}).map(([n, value]) => ({ name: n, value })),
                    ports: [{ name: "http", containerPort: port }],
                    // `pulumi up` waits for Ready, and a key routes to the fork only then: ready
                    // must mean serving, not just started.
                    readinessProbe: base.apply((b) =>
                      forkReadiness(fork.readinessPath ?? b.readinessPath, port),
                    ),
                    resources: {
                      requests,
                      limits,
                    },
                    securityContext: {
                      privileged: false,
                      allowPrivilegeEscalation: false,
                      seccompProfile: { type: "RuntimeDefault" },
                    },
                  },
                ],
              },
            },
          },
        },
        { parent, dependsOn: [namespace, agents] },
      ),
    );
    services.push(
      new k8s.core.v1.Service(
        `${name}-svc-${service}`,
        {
          metadata: {
            name: service,
            namespace: ns,
            labels: forkLabels,
            annotations: awaitForkService,
          },
          spec: {
            selector,
            ports: [{ name: "http", port, targetPort: port, protocol: "TCP" }],
          },
        },
        inNs,
      ),
    );
    destinations[service] = pulumi.interpolate`${service}.${ns}.svc.cluster.local:${port}`;
  }
  const forkDestinations = pulumi.output(destinations) as pulumi.Output<Record<string, string>>;

  // Short names work in the shard as in the baseline namespace (ADR 0012): each routed baseline
  // service the shard does not fork resolves to the gateway here too, so a fork calling
  // `http://payments:8080` reaches the gateway, which routes it by the key.
  const gatewayNames: k8s.core.v1.Service[] = [];
  if (isPlainBaseline(args.baseline)) {
    for (const [service, b] of Object.entries(args.baseline)) {
      if (b.selector === undefined || (args.forks ?? {})[service] !== undefined) continue;
      gatewayNames.push(
        new k8s.core.v1.Service(
          `${name}-name-${service}`,
          {
            metadata: {
              name: service,
              namespace: ns,
              labels: { ...labels, "shardworks.dev/routes": service },
              annotations: { "shardworks.dev/routed-by": "gateway" },
            },
            spec: {
              type: "ExternalName",
              externalName: pulumi.interpolate`envoy.${args.gatewayNamespace}.svc.cluster.local`,
              ports: [{ name: "http", port: b.port, protocol: "TCP" }],
            },
          },
          inNs,
        ),
      );
    }
  }

  const registration = args.register?.(
    {
      name: args.shardName,
      owner: args.owner,
      namespace: namespace.metadata.name,
      routingKey,
      forkDestinations,
      ttlSeconds: args.ttlSeconds,
      expiresAt,
    },
    { parent, dependsOn: [...services, ...deployments] },
  );
  return {
    namespace,
    namespaceName: ns,
    routingKey,
    expiresAt,
    forkDestinations,
    services,
    deployments,
    registration,
  };
}

function isPlainBaseline(
  baseline: pulumi.Input<Record<string, BaselineService>>,
): baseline is Record<string, BaselineService> {
  return !pulumi.Output.isInstance(baseline) && !(baseline instanceof Promise);
}

/** One developer's shard: namespace, fences, owner binding, forks and TTL. */
export class DevShard extends pulumi.ComponentResource {
  /** `shard-<name>`. */
  readonly namespace: pulumi.Output<string>;
  /** The routing key requests carry to reach this shard's forks. */
  readonly routingKey: pulumi.Output<string>;
  /** Baseline service → `"<svc>.<ns>.svc.cluster.local:<port>"` of its fork. */
  readonly forkDestinations: pulumi.Output<Record<string, string>>;
  /** RFC 3339 expiry (`shardworks.dev/expires-at`). */
  readonly expiresAt: pulumi.Output<string>;

  constructor(name: string, args: DevShardArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardworks:components:DevShard", name, {}, opts);
    validateShardName(args.shardName);
    validateTtl(args.ttlSeconds);
    validateReadyTimeout(args.readyTimeoutSeconds ?? DEFAULT_READY_TIMEOUT_SECONDS);
    validateForks(args.forks ?? {});
    // A baseline known now (the program resolves the platform's first) is checked now, before
    // any child is registered; one still unknown is checked when it resolves.
    if (isPlainBaseline(args.baseline))
      validateForksAgainstBaseline(args.forks ?? {}, args.baseline);
    const result = createDevShard(name, args, this);
    this.namespace = result.namespace.metadata.name;
    this.routingKey = pulumi.output(result.routingKey);
    this.forkDestinations = result.forkDestinations;
    // The live annotation: the expiry set at creation (later runs leave it unchanged).
    this.expiresAt = result.namespace.metadata.annotations.apply(
      (annotations) => annotations?.[EXPIRES_AT_ANNOTATION] ?? result.expiresAt,
    );
    this.registerOutputs({
      namespace: this.namespace,
      routingKey: this.routingKey,
      forkDestinations: this.forkDestinations,
      expiresAt: this.expiresAt,
    });
  }
}
