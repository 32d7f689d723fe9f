/**
 * The Shardworks Pulumi program (`index.ts` runs it). It validates the stack's `shardworks:*` config first (nothing is
 * registered if it is wrong), then builds either a platform stack (one per cluster) or a shard
 * stack (one per developer, reading the platform's outputs through a StackReference).
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import * as aws from "@pulumi/aws";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import {
  AccessControl,
  BaselineRouting,
  DevShard,
  EnvoyGateway,
  MetalCluster,
  RuntimeDeployment,
  routedPorts,
  routedServices,
  type BaselineService,
} from "../components";
import { registerShardWith } from "../components/shard-registration";
import {
  PlatformTarget,
  StackConfigError,
  StackKind,
  loadStackConfig,
  type PlatformConfig,
  type ShardConfig,
  type StackConfig,
} from "./config";
import { parseDuration } from "./duration";
import { platformBaseline } from "./platform-baseline";

/** Config problems are the user's to fix: say what, without a stack trace. */
export function loadConfigOrExplain(): StackConfig {
  try {
    return loadStackConfig();
  } catch (error) {
    if (error instanceof StackConfigError) {
      throw new pulumi.RunError(`invalid stack config:\n${error.message}`);
    }
    throw error;
  }
}

function readKubeconfig(path: string): string {
  try {
    const expanded = path.startsWith("~/") ? join(homedir(), path.slice(2)) : path;
    return readFileSync(resolve(expanded), "utf8");
  } catch (error) {
    throw new pulumi.RunError(
      `shardworks:kubeconfig: cannot read ${JSON.stringify(path)} (${(error as Error).message}); give the path of the cluster's kubeconfig`,
    );
  }
}

/** A platform stack: the cluster (AWS) or a given one (local), then the platform into it. */
function buildPlatform(config: PlatformConfig): Record<string, unknown> {
  let kubeconfig: pulumi.Output<string>;
  let nodeGroupNames: pulumi.Output<string[]> = pulumi.output([]);
  if (config.target === PlatformTarget.Aws) {
    const region = config.region ?? "";
    const awsProvider = new aws.Provider(`${config.clusterName}-aws`, { region });
    const cluster = new MetalCluster(
      config.clusterName,
      {
        clusterName: config.clusterName,
        kubernetesVersion: config.kubernetesVersion,
        availabilityZones: config.availabilityZones ?? [`${region}a`, `${region}b`],
        nodeGroups: config.nodeGroups,
        adminRoleArns: config.access.adminRoleArns,
      },
      { providers: { aws: awsProvider } },
    );
    kubeconfig = cluster.kubeconfig;
    nodeGroupNames = cluster.nodeGroupNames;
  } else {
    kubeconfig = pulumi.secret(readKubeconfig(config.kubeconfig ?? ""));
  }
  const provider = new k8s.Provider(`${config.clusterName}-k8s`, { kubeconfig });
  const opts = { provider };

  const access = new AccessControl(
    `${config.clusterName}-access`,
    { platformAdmins: config.access.platformAdmins },
    opts,
  );
  const runtime = new RuntimeDeployment(
    `${config.clusterName}-runtime`,
    {
      version: config.runtime.version,
      imageRepository: config.runtime.imageRepository,
      // Pinned by digest; the schema requires it unless skipAwait (then the tag stands in).
      ...(config.runtime.image === undefined ? {} : { image: config.runtime.image }),
      etcdImage: config.runtime.etcdImage,
      etcdStorage: config.runtime.etcdStorage,
      etcdEndpoints: config.runtime.etcdEndpoints,
      schedulerReplicas: config.runtime.schedulerReplicas,
      nodeAgentDriver: config.runtime.nodeAgentDriver,
      insecureRegistries: config.runtime.insecureRegistries,
      platformToken: pulumi.secret(config.platformToken),
      gatewayNamespace: config.gateway.namespace,
      baselineServices: config.baseline,
      skipAwait: config.skipAwait,
    },
    { provider, dependsOn: [access] },
  );
  const gateway = new EnvoyGateway(
    `${config.clusterName}-gateway`,
    {
      namespace: config.gateway.namespace,
      ...(config.gateway.image === undefined ? {} : { image: config.gateway.image }),
      replicas: config.gateway.replicas,
      maxReplicas: config.gateway.maxReplicas,
      adsHost: runtime.xdsHost,
      adsPort: runtime.xdsPort,
      listenerPort: config.gateway.listenerPort,
      adminPort: config.gateway.adminPort,
      serviceType: config.gateway.serviceType,
      internal: config.gateway.internal,
      routedPorts: routedPorts(config.baseline),
      skipAwait: config.skipAwait,
    },
    opts,
  );
  // Calls between baseline services go through the gateway too (ADR 0012), for the services
  // that name their pods' labels. Not after the gateway: Envoy resolves `<name>-baseline` as soon
  // as the routing controller names it, and a name that does not exist yet stays unresolved
  // until Envoy's next DNS refresh (503 "no healthy upstream" meanwhile).
  if (routedServices(config.baseline).length > 0) {
    new BaselineRouting(
      `${config.clusterName}-baseline-routing`,
      { services: config.baseline, gatewayNamespace: config.gateway.namespace },
      { provider },
    );
  }
  const baselineServices: Record<string, BaselineService> = config.baseline;
  return {
    kind: StackKind.Platform,
    clusterName: config.clusterName,
    kubeconfig,
    nodeGroupNames,
    gatewayNamespace: gateway.namespace,
    gatewayAddress: gateway.address,
    runtimeApiUrl: runtime.schedulerUrl,
    // How many gateway xDS clients the rollout's xds-acked gate waits for.
    gatewayReplicas: config.gateway.replicas,
    // Shard stacks register with the runtime API with it; a secret in the state.
    platformToken: pulumi.secret(config.platformToken),
    runtimeNamespace: runtime.namespace,
    baselineServices,
    // Ceiling of JitGrant expiries (`maxDurationMs` of JitGrant) for whoever grants access.
    maxJitDurationMs: parseDuration(config.access.maxJitDuration),
  };
}

/** A shard stack: one DevShard in the platform's cluster. */
async function buildShard(config: ShardConfig): Promise<Record<string, unknown>> {
  const platform = new pulumi.StackReference(config.platformStack);
  // Forks checked against the platform's baseline before any shard resource is registered.
  const baseline = await platformBaseline(platform, config);
  const kubeconfig = pulumi.secret(platform.requireOutput("kubeconfig")) as pulumi.Output<string>;
  const provider = new k8s.Provider(`shard-${config.name}-k8s`, { kubeconfig });
  // The platform exports the in-cluster API URL; `shardworks:runtimeApiUrl` overrides it when
  // `pulumi up` runs outside the cluster (e.g. through `kubectl port-forward`).
  const apiUrl: pulumi.Output<string> =
    config.runtimeApiUrl !== undefined
      ? pulumi.output(config.runtimeApiUrl)
      : (platform.requireOutput("runtimeApiUrl") as pulumi.Output<string>);
  const token = pulumi.secret(
    config.platformToken ?? (platform.requireOutput("platformToken") as pulumi.Output<string>),
  );
  const shard = new DevShard(
    `shard-${config.name}`,
    {
      shardName: config.name,
      owner: config.owner,
      routingKey: config.routingKey,
      forks: config.forks,
      baseline,
      gatewayNamespace: platform.requireOutput("gatewayNamespace") as pulumi.Output<string>,
      // The schema accepted the duration, so it parses.
      ttlSeconds: Math.round((parseDuration(config.ttl) ?? 0) / 1000),
      quota: config.quota,
      readyTimeoutSeconds: Math.round((parseDuration(config.readyTimeout) ?? 0) / 1000),
      // Registration with the runtime API (routing key + forks): `pulumi destroy` deregisters.
      register: registerShardWith({ apiUrl, token }),
    },
    { provider },
  );
  return {
    kind: StackKind.Shard,
    kubeconfig,
    shardNamespace: shard.namespace,
    routingKey: shard.routingKey,
    forkDestinations: shard.forkDestinations,
    expiresAt: shard.expiresAt,
    gatewayAddress: platform.requireOutput("gatewayAddress"),
    runtimeApiUrl: apiUrl,
  };
}

/** Build the stack the config asks for; its result is the stack's outputs. */
export async function buildStack(config: StackConfig): Promise<Record<string, unknown>> {
  return config.kind === StackKind.Platform ? buildPlatform(config) : buildShard(config);
}
