/** The Shardworks Pulumi components. */
export {
  AccessControl,
  ClusterRoleName,
  DEFAULT_MAX_JIT_MS,
  JitGrant,
  createAccessControl,
  createJitGrant,
  validateJitExpiry,
  validateSubject,
  type AccessControlArgs,
  type JitGrantArgs,
  type Subject,
} from "./access-control";
export {
  EXPIRES_AT_ANNOTATION,
  Env,
  MICROVM_KEY,
  Ports,
  SHARD_LABEL,
  SKIP_AWAIT_ANNOTATION,
  SYSTEM_NAMESPACE,
} from "./common";
export {
  DevShard,
  MAX_SHARD_TTL_SECONDS,
  baselineOf,
  createDevShard,
  validateForks,
  validateShardName,
  validateTtl,
  type BaselineService,
  type DevShardArgs,
  type ForkSpec,
  type ShardQuota,
  type ShardRegistrationInput,
} from "./dev-shard";
export {
  EnvoyGateway,
  GATEWAY_NODE_ID,
  GatewayServiceType,
  createEnvoyGateway,
  validateGatewayPorts,
  validateGatewayReplicas,
  type EnvoyGatewayArgs,
} from "./envoy-gateway";
export {
  MetalCluster,
  NodeGroupRole,
  createMetalCluster,
  validateAvailabilityZones,
  validateNodeGroups,
  type MetalClusterArgs,
  type NodeGroupSpec,
} from "./metal-cluster";
export {
  NodeAgentDriver,
  RuntimeDeployment,
  RuntimeNames,
  baselineDestinations,
  createRuntimeDeployment,
  validateEtcdEndpoints,
  validateNodeAgentDriver,
  validateSchedulerReplicas,
  type RuntimeDeploymentArgs,
} from "./runtime-deployment";
