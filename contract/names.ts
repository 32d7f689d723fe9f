/**
 * The names both sides of Shardworks agree on: label, taint and annotation keys, the system
 * namespace, the ports the runtime services listen on and the environment variables they read.
 * The components write them into Kubernetes objects, the runtime and the policy pack read them.
 */

/** Label and taint key of the bare-metal nodes that run microVMs. */
export const MICROVM_KEY = "shardworks.dev/microvm";
/** RFC 3339 expiry of a shard namespace or a JIT grant; the reapers delete what is past it. */
export const EXPIRES_AT_ANNOTATION = "shardworks.dev/expires-at";
/** Label carrying the shard name on everything a DevShard creates. */
export const SHARD_LABEL = "shardworks.dev/shard";
/** Prefix of a shard's namespace: shard `alice` lives in `shard-alice`. */
export const SHARD_NAMESPACE_PREFIX = "shard-";
/** Label (value `"true"`) marking a JIT grant's binding, so the access reaper and policy find it. */
export const JIT_LABEL = "shardworks.dev/jit";
/** Host paths the node agent mounts: the KVM device and its state directory. Nothing else may. */
export const NODE_AGENT_HOST_PATHS = { kvm: "/dev/kvm", state: "/var/lib/shardworks" } as const;
/**
 * A registry's `host[:port]` as image references name it: a DNS name or IPv4 address, or an IPv6
 * address in brackets, then an optional port.
 */
export const REGISTRY_HOST_PATTERN =
  /^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$/;

/** The namespace of the runtime services: the only one where a privileged container runs. */
export const SYSTEM_NAMESPACE = "shardworks-system";

/** Ports the runtime services listen on (container and Service ports). */
export const Ports = {
  schedulerApi: 8080,
  xds: 18000,
  nodeAgent: 7070,
  etcdClient: 2379,
  etcdPeer: 2380,
  /** The gateway Envoy's ingress listener (the EnvoyGateway default). */
  gatewayListener: 8080,
  /** The gateway Envoy's admin interface (readiness, stats). */
  envoyAdmin: 9901,
} as const;

/**
 * etcd's history compaction, for every etcd the project runs (in-cluster and local): without it,
 * revisions pile up with every status CAS and the database grows without bound.
 */
export const ETCD_COMPACTION_ARGS: readonly string[] = [
  "--auto-compaction-mode=periodic",
  "--auto-compaction-retention=1h",
];

/** Environment variables the runtime processes read. */
export const Env = {
  etcdEndpoints: "SHARDWORKS_ETCD_ENDPOINTS",
  platformToken: "SHARDWORKS_PLATFORM_TOKEN",
  /** Bearer token of the node agents' APIs: the scheduler sends it, the agents demand it. */
  agentToken: "SHARDWORKS_AGENT_TOKEN",
  /** The runtime version (the image tag): `/healthz` and `routers/<name>` report it. */
  runtimeVersion: "SHARDWORKS_RUNTIME_VERSION",
  /** The pod's IP (downward API), for addresses the pod advertises. */
  podIp: "SHARDWORKS_POD_IP",
  /** A routing controller replica's name in etcd (`routers/<name>`): its pod name. */
  routerName: "SHARDWORKS_ROUTER_NAME",
  /** Where the scheduler reaches a routing controller replica's ADS/CSDS. */
  advertiseAddress: "SHARDWORKS_ADVERTISE_ADDRESS",
  nodeName: "SHARDWORKS_NODE_NAME",
  /** Address to listen on (the node agent also advertises it, so it gets the pod IP). */
  listenHost: "SHARDWORKS_LISTEN_HOST",
  listenPort: "SHARDWORKS_LISTEN_PORT",
  driver: "SHARDWORKS_DRIVER",
  /** Node agent's work dirs, logs and image cache. */
  dataDir: "SHARDWORKS_DATA_DIR",
  /** Routing controller's baseline services, JSON `[{ name, destination: "host:port", hosts? }]`. */
  baselineServices: "SHARDWORKS_BASELINE_SERVICES",
  /** Scheduler: `binpack` or `spread`. */
  strategy: "SHARDWORKS_STRATEGY",
  /** Scheduler: the placer election's lease TTL, seconds. */
  electionTtl: "SHARDWORKS_ELECTION_TTL",
  /** Scheduler: registries (host[:port], comma-separated) shard tokens may pull from. */
  shardRegistries: "SHARDWORKS_SHARD_REGISTRIES",
  /** Scheduler: `allow` lets shard tokens ask for `network: true` (default `deny`). */
  shardNetwork: "SHARDWORKS_SHARD_NETWORK",
  /** Node agent: CPU capacity in millicores and memory in MiB (default: the machine's). */
  nodeCpu: "SHARDWORKS_NODE_CPU",
  nodeMemory: "SHARDWORKS_NODE_MEMORY",
  /**
   * Node agent: hosts (comma-separated, no port) a platform image's pull may be redirected to or
   * get tokens from although private (a private registry's internal blob store or auth service).
   */
  registryTrustedHosts: "SHARDWORKS_REGISTRY_TRUSTED_HOSTS",
  registryInsecure: "SHARDWORKS_REGISTRY_INSECURE",
  /** Node agent: its lease TTL, seconds. */
  leaseTtl: "SHARDWORKS_LEASE_TTL",
  /** Node agent: how long a warm sandbox may stay idle, seconds. */
  warmIdleSeconds: "SHARDWORKS_WARM_IDLE_SECONDS",
  /** Node agent: most images whose warm starts are kept at once. */
  warmMaxImages: "SHARDWORKS_WARM_MAX_IMAGES",
  /** Routing controller: the gateway's ingress listener, and the sandbox domain it serves. */
  ingressPort: "SHARDWORKS_INGRESS_PORT",
  ingressHost: "SHARDWORKS_INGRESS_HOST",
  domain: "SHARDWORKS_DOMAIN",
  /** Routing controller: kubeconfig of the access reaper (default: in-cluster). */
  kubeconfig: "SHARDWORKS_KUBECONFIG",
  /** CLI: the scheduler API's base URL and the token to call it with. */
  api: "SHARDWORKS_API",
  token: "SHARDWORKS_TOKEN",
  /** CLI: the longest JIT grant `access grant` asks for. */
  jitMax: "SHARDWORKS_JIT_MAX",
  /** `npm start`: where every process's JSON log lines go, and its fixed ports (0 = free). */
  logFile: "SHARDWORKS_LOG_FILE",
  gatewayPort: "SHARDWORKS_GATEWAY_PORT",
  xdsPort: "SHARDWORKS_XDS_PORT",
  /** Every runtime process: its log level, and its name in log lines. */
  logLevel: "SHARDWORKS_LOG_LEVEL",
  service: "SHARDWORKS_SERVICE",
} as const;
