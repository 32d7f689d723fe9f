/**
 * The contract between the Pulumi side (`components/`, `stacks/`, `policy/`) and the runtime: the
 * names, ports and env vars both use, the access model, the gateway's Envoy bootstrap, the etcd
 * records (`./model`) and the scheduler API. It imports neither side (ESLint enforces it), so
 * both can import it without importing each other.
 */
export {
  CLUSTER_ROLE_RULES,
  ClusterRoleName,
  DEFAULT_MAX_JIT_MS,
  MAX_JIT_CEILING_MS,
  checkJitExpiry,
  checkJitMaxDuration,
  parseRfc3339,
  type PolicyRule,
} from "./access";
export {
  ADS_RETRY_MAX_INTERVAL_MS,
  GATEWAY_NODE_ID,
  XDS_CLUSTER,
  envoyBootstrap,
  envoyBootstrapOptionsSchema,
  type EnvoyBootstrapOptions,
} from "./envoy-bootstrap";
export {
  EXPIRES_AT_ANNOTATION,
  Env,
  JIT_LABEL,
  MICROVM_KEY,
  NODE_AGENT_HOST_PATHS,
  ETCD_COMPACTION_ARGS,
  Ports,
  SHARD_LABEL,
  SHARD_NAMESPACE_PREFIX,
  SYSTEM_NAMESPACE,
  REGISTRY_HOST_PATTERN,
} from "./names";
