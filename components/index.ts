/** The Shardworks Pulumi components. */
export {
  AccessControl,
  ClusterRoleName,
  DEFAULT_MAX_JIT_MS,
  JitGrant,
  createAccessControl,
  createJitGrant,
  MAX_JIT_CEILING_MS,
  validateJitExpiry,
  validateJitMaxDuration,
  validateJitTarget,
  validateSubject,
  type AccessControlArgs,
  type JitGrantArgs,
  type Subject,
} from "./access-control";
export {
  BASELINE_SERVICE_SUFFIX,
  BaselineRouting,
  MAX_ROUTED_SERVICE_NAME,
  createBaselineRouting,
  inClusterHosts,
  routedPorts,
  routedServices,
  routingBaseline,
  validateBaselineRouting,
  type BaselineRoutingArgs,
} from "./baseline-routing";
export {
  CLUSTER_ROLE_RULES,
  EXPIRES_AT_ANNOTATION,
  Env,
  MICROVM_KEY,
  Ports,
  SHARD_LABEL,
  SYSTEM_NAMESPACE,
  checkJitExpiry,
  parseRfc3339,
  type PolicyRule,
} from "../contract";
export { SKIP_AWAIT_ANNOTATION, TIMEOUT_SECONDS_ANNOTATION, WAIT_FOR_ANNOTATION } from "./common";
export {
  DevShard,
  MAX_SHARD_TTL_SECONDS,
  baselineOf,
  defaultRoutingKey,
  createDevShard,
  containerLimits,
  validateForks,
  validateForksAgainstBaseline,
  validateReadyTimeout,
  validateShardName,
  validateTtl,
  DEFAULT_READY_TIMEOUT_SECONDS,
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
  RESERVED_NAMESPACES,
  validateGatewayNamespace,
  validateGatewayAdminHost,
  validateGatewayPorts,
  validateGatewayReplicas,
  validateRoutedPorts,
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
export { RuntimeDeployment, createRuntimeDeployment } from "./runtime-deployment";
export {
  NodeAgentDriver,
  RuntimeNames,
  validateEtcdEndpoints,
  validateNodeAgentDriver,
  validateSchedulerReplicas,
  type RuntimeDeploymentArgs,
} from "./runtime-deployment/args";
export { baselineDestinations } from "./runtime-deployment/routing";
export {
  AGENT_TOKEN_KEY,
  TOKEN_CHECKSUM_ANNOTATION,
  agentTokenOf,
} from "./runtime-deployment/tokens";
export { JitExpiry, jitExpiryProvider, type JitExpiryProps } from "./jit-expiry";
