/**
 * A developer's shard: its own namespace holding forks of the baseline services it changes,
 * fenced by a quota, a LimitRange and a default-deny NetworkPolicy (only the gateway gets in),
 * owned through a RoleBinding, and stamped with a TTL.
 */
import { createHash } from "node:crypto";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { ClusterRoleName } from "./access-control";
import { MAX_ROUTING_KEY_LENGTH, MAX_SHARD_TTL_SECONDS, dnsLabel } from "../contract/model";
import { EXPIRES_AT_ANNOTATION, SHARD_LABEL, SHARD_NAMESPACE_PREFIX } from "../contract";
import {
  TIMEOUT_SECONDS_ANNOTATION,
  appLabels,
  podSecurityLabels,
  type ProbeCheck,
} from "./common";

export { MAX_SHARD_TTL_SECONDS };

/** A baseline service as the platform stack exports it. */
export interface BaselineService {
  image: string;
  port: number;
  namespace: string;
  /**
   * Labels of the service's pods. With it, calls between services are routed too (ADR 0012):
   * the platform owns Service `<name>` (→ the gateway) and `<name>-baseline` (→ these pods).
   * Absent: routed at the edge only, the team's own Service `<name>` is the baseline.
   */
  selector?: Record<string, string>;
  /**
   * Path its pods answer 2xx on once they serve (an HTTP readiness probe for its forks).
   * Absent: a fork is ready once its port accepts connections (a TCP probe).
   */
  readinessPath?: string;
}

/** One fork: overrides of a baseline service. */
export interface ForkSpec {
  /** Image of the fork. Default: the baseline's image (a fork that only changes env). */
  image?: string;
  /** Environment of the fork's container. Default: none. */
  env?: Record<string, string>;
  /** Container and Service port. Default: the baseline's port. */
  port?: number;
  /** Replicas. Default 1. */
  replicas?: number;
  /** Readiness path of the fork (see {@link BaselineService.readinessPath}). Default: the baseline's. */
  readinessPath?: string;
}

/** Resource quota of a shard namespace. */
export interface ShardQuota {
  /** CPU quantity for requests and limits, e.g. `"4"`. */
  cpu: string;
  /** Memory quantity for requests and limits, e.g. `"8Gi"`. */
  memory: string;
  /** Most pods at once. */
  pods: number;
}

/**
 * What a registration of the shard with the runtime API needs. The registration itself (a
 * Pulumi dynamic resource that calls the scheduler, so that `pulumi destroy` deregisters) is
 * built by the routing work; it is plugged in through {@link DevShardArgs.register}.
 */
export interface ShardRegistrationInput {
  name: string;
  owner: string;
  namespace: pulumi.Output<string>;
  routingKey: string;
  /** Baseline service → `"<svc>.<ns>.svc.cluster.local:<port>"` of its fork. */
  forkDestinations: pulumi.Output<Record<string, string>>;
  ttlSeconds: number;
  expiresAt: string;
}

/** Arguments of {@link DevShard}. */
export interface DevShardArgs {
  /** Shard name: a DNS label of at most 57 characters; the namespace is `shard-<name>`. */
  shardName: string;
  /** Kubernetes user name of the owner: bound to `shardworks:shard-owner` in the namespace. */
  owner: string;
  /** Routing key requests carry to reach the forks. Default: `shard-<name>`. */
  routingKey?: string;
  /** Baseline service → fork overrides. Every key must be a service of `baseline`. Default: none. */
  forks?: Record<string, ForkSpec>;
  /** The platform's baseline services (from the platform stack's outputs). */
  baseline: pulumi.Input<Record<string, BaselineService>>;
  /** Namespace of the Envoy gateway: the only namespace allowed into the shard. */
  gatewayNamespace: pulumi.Input<string>;
  /** Time to live in seconds; at most 7 days. Each `pulumi up` restarts it from `now`. */
  ttlSeconds: number;
  /** Quota of the namespace. Default: 4 CPU, 8Gi, 20 pods. */
  quota?: ShardQuota;
  /** Clock for the expiry. Default: now. */
  now?: Date;
  /**
   * How long `pulumi up` waits for each fork's pods to become Ready (and its Service to reach
   * them) before it fails, naming the fork and why its pods are not ready (e.g. `ErrImagePull`).
   * Whole seconds, 1 to 3600. Default 300.
   */
  readyTimeoutSeconds?: number;
  /**
   * Registers the shard with the runtime API (routing key + fork destinations), created as a
   * child of the shard after its Services. Default: no registration (routing does not know the
   * shard until something registers it).
   */
  register?: (input: ShardRegistrationInput, opts: pulumi.CustomResourceOptions) => pulumi.Resource;
}

/** Check the shard name: a DNS label short enough for `shard-<name>`. */
export function validateShardName(shardName: string): void {
  if (!dnsLabel.max(57).safeParse(shardName).success) {
    throw new pulumi.InputPropertyError({
      propertyPath: "shardName",
      reason: `${JSON.stringify(shardName)} must be a DNS label (lowercase letters, digits, '-') of at most 57 characters`,
    });
  }
}

/** Check the TTL: positive, whole seconds, at most 7 days. */
export function validateTtl(ttlSeconds: number): void {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0 || ttlSeconds > MAX_SHARD_TTL_SECONDS) {
    throw new pulumi.InputPropertyError({
      propertyPath: "ttlSeconds",
      reason: `${ttlSeconds} must be whole seconds between 1 and ${MAX_SHARD_TTL_SECONDS} (7 days)`,
    });
  }
}

/** The default of {@link DevShardArgs.readyTimeoutSeconds}. */
export const DEFAULT_READY_TIMEOUT_SECONDS = 300;
/** The most {@link DevShardArgs.readyTimeoutSeconds} allows: one hour. */
export const MAX_READY_TIMEOUT_SECONDS = 3600;

/** Check the readiness timeout: whole seconds, 1 to an hour. */
export function validateReadyTimeout(seconds: number): void {
  if (!Number.isInteger(seconds) || seconds <= 0 || seconds > MAX_READY_TIMEOUT_SECONDS) {
    throw new pulumi.InputPropertyError({
      propertyPath: "readyTimeoutSeconds",
      reason: `${seconds} must be whole seconds between 1 and ${MAX_READY_TIMEOUT_SECONDS} (1 hour)`,
    });
  }
}

/** A readiness path: absolute, printable, no spaces (what kubelet can GET). */
export const READINESS_PATH = /^\/[\x21-\x7e]{0,1023}$/;

/** The readiness probe of a fork: an HTTP GET of `path`, else a TCP connect to its port. */
export function forkReadiness(
  path: string | undefined,
  port: pulumi.Input<number>,
): k8s.types.input.core.v1.Probe {
  const check: ProbeCheck =
    path === undefined ? { tcpSocket: { port } } : { httpGet: { path, port } };
  // Checked every second: a fork's first routed request waits on this.
  return { ...check, periodSeconds: 1, failureThreshold: 3 };
}

/** Check fork names and ports (what can be checked before the baseline is known). */
export function validateForks(forks: Record<string, ForkSpec>): void {
  for (const [service, fork] of Object.entries(forks)) {
    if (!dnsLabel.safeParse(service).success) {
      throw new pulumi.InputPropertyError({
        propertyPath: `forks.${service}`,
        reason: "the service name must be a DNS label (lowercase letters, digits, '-', at most 63)",
      });
    }
    if (
      fork.port !== undefined &&
      (!Number.isInteger(fork.port) || fork.port < 1 || fork.port > 65535)
    ) {
      throw new pulumi.InputPropertyError({
        propertyPath: `forks.${service}.port`,
        reason: `${fork.port} is not a port (1-65535)`,
      });
    }
    if (fork.readinessPath !== undefined && !READINESS_PATH.test(fork.readinessPath)) {
      throw new pulumi.InputPropertyError({
        propertyPath: `forks.${service}.readinessPath`,
        reason: `${JSON.stringify(fork.readinessPath)} is not a URL path; write it like "/healthz"`,
      });
    }
  }
}

/** The baseline service a fork overrides; throws when the platform has no such service. */
export function baselineOf(
  service: string,
  baseline: Record<string, BaselineService>,
): BaselineService {
  const found = baseline[service];
  if (found === undefined) {
    const known = Object.keys(baseline);
    throw new pulumi.InputPropertyError({
      propertyPath: `forks.${service}`,
      reason: `the platform has no baseline service ${JSON.stringify(service)}; known: ${known.length ? known.join(", ") : "(none)"}`,
    });
  }
  return found;
}

/** Check every fork against the platform's baseline services (see {@link baselineOf}). */
export function validateForksAgainstBaseline(
  forks: Record<string, ForkSpec>,
  baseline: Record<string, BaselineService>,
): void {
  for (const service of Object.keys(forks)) baselineOf(service, baseline);
}

/** The smaller of two CPU or memory quantities (`"500m"` vs `"250m"`); see {@link quantityValue}. */
export function minQuantity(a: string, b: string): string {
  return quantityValue(b) < quantityValue(a) ? b : a;
}

const QUANTITY_SUFFIX: Record<string, number> = {
  "": 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/**
 * The value of a Kubernetes quantity in base units, for comparison only. Hand-written: the
 * `@kubernetes/client-node` parser would pull the whole client in for this one function.
 */
export function quantityValue(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(quantity);
  if (match === null) return Number.NaN;
  return Number(match[1]) * (QUANTITY_SUFFIX[match[2] ?? ""] ?? Number.NaN);
}

/** Default limits of a shard container: 500m CPU and 512Mi, or the quota if it is smaller. */
export function containerLimits(quota: ShardQuota): { cpu: string; memory: string } {
  return { cpu: minQuantity("500m", quota.cpu), memory: minQuantity("512Mi", quota.memory) };
}

/** Default requests of a shard container: 100m CPU and 128Mi, or the quota if it is smaller. */
export function containerRequests(quota: ShardQuota): { cpu: string; memory: string } {
  return { cpu: minQuantity("100m", quota.cpu), memory: minQuantity("128Mi", quota.memory) };
}

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
  // The Kubernetes provider waits for each fork (Deployment: its pods Ready; Service: endpoints
  // that are Ready) at most this long; past it `pulumi up` fails with the pods' errors.
  const awaitFork = {
    [TIMEOUT_SECONDS_ANNOTATION]: String(args.readyTimeoutSeconds ?? DEFAULT_READY_TIMEOUT_SECONDS),
  };

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
          metadata: { name: service, namespace: ns, labels: forkLabels, annotations: awaitFork },
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
