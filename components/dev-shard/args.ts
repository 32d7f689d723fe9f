/** The arguments of a `DevShard` and the shapes they are made of. */
import type * as pulumi from "@pulumi/pulumi";

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
