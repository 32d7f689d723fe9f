/**
 * The runtime services in `shardworks-system`: etcd (3 members, or an existing one), the
 * scheduler, a node agent per microVM node, the routing controller; each with its own
 * least-privilege ServiceAccount, probes, requests and limits, behind NetworkPolicies.
 * The node agent is the one privileged container of the platform (it opens /dev/kvm).
 */
import * as k8s from "@pulumi/kubernetes";
import { createHash, createHmac } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import {
  EXPIRES_AT_ANNOTATION,
  Env,
  MICROVM_KEY,
  NODE_AGENT_HOST_PATHS,
  Ports,
  SYSTEM_NAMESPACE,
  appLabels,
  awaitAnnotations,
  probes,
  restrictedContainer,
  type ProbeCheck,
} from "./common";
import { routingBaseline } from "./baseline-routing";
import type { BaselineService } from "./dev-shard";

/** Arguments of {@link RuntimeDeployment}. */
export interface RuntimeDeploymentArgs {
  /** Tag of the runtime image, e.g. `"0.1.0"`. */
  version: pulumi.Input<string>;
  /** Repository of the runtime image (scheduler, node agent, routing controller run from it). */
  imageRepository: string;
  /**
   * The runtime image itself, e.g. pinned by digest (`repo@sha256:…`, what
   * `npm run images -- build runtime` prints); overrides `<imageRepository>:<version>`. The
   * processes still report `version`. Default `<imageRepository>:<version>`.
   */
  image?: pulumi.Input<string>;
  /** etcd image for the StatefulSet. Default `quay.io/coreos/etcd:v3.5.21`. */
  etcdImage?: string;
  /**
   * Storage of the in-cluster etcd members: `persistent` (a 4Gi PersistentVolumeClaim each, needs
   * a storage class) or `ephemeral` (an emptyDir: lost with the pod; for clusters without a volume
   * provisioner, e.g. the local testbed). Default `persistent`.
   */
  etcdStorage?: "persistent" | "ephemeral";
  /** Endpoints of an existing etcd; when given, no etcd StatefulSet is created. */
  etcdEndpoints?: string[];
  /** Scheduler API replicas, at least 2. Default 2. */
  schedulerReplicas?: number;
  /** Bearer token of the scheduler API (stored in a Secret). */
  platformToken: pulumi.Input<string>;
  /** Namespace of the Envoy gateway (allowed to reach the xDS server). */
  gatewayNamespace: string;
  /**
   * Sandbox driver of the node agents: `firecracker` (microVMs, needs KVM), `qemu` (microVMs,
   * KVM or slow TCG) or `process` (bubblewrap, NOT hardware-isolated). Default `firecracker`.
   */
  nodeAgentDriver?: NodeAgentDriver;
  /**
   * The baseline services shards may fork (service → image, port, namespace, selector); the
   * routing controller routes to `<service>.<namespace>.svc.cluster.local:<port>`, or to
   * `<service>-baseline` for a service with a `selector` (see {@link baselineDestinations}).
   * Default none.
   */
  baselineServices?: pulumi.Input<Record<string, BaselineService>>;
  /**
   * Do not wait for readiness (annotates workloads, Services and the namespace
   * `pulumi.com/skipAwait: "true"`): for clusters without kubelets, e.g. the local testbed.
   * Default false.
   */
  skipAwait?: boolean;
}

/** Sandbox drivers a node agent can run (see `runtime/node-agent/drivers`). */
export const NodeAgentDriver = {
  Firecracker: "firecracker",
  Qemu: "qemu",
  Process: "process",
} as const;
/** One of {@link NodeAgentDriver}. */
export type NodeAgentDriver = (typeof NodeAgentDriver)[keyof typeof NodeAgentDriver];

/** Names of the Kubernetes objects other parts address. */
export const RuntimeNames = {
  etcd: "shardworks-etcd",
  scheduler: "shardworks-scheduler",
  nodeAgent: "shardworks-node-agent",
  routing: "shardworks-routing",
  tokenSecret: "shardworks-platform-token",
} as const;

/** Check the scheduler replica count: at least 2 (the API must survive a pod loss). */
export function validateSchedulerReplicas(replicas: number): void {
  if (!Number.isInteger(replicas) || replicas < 2) {
    throw new pulumi.InputPropertyError({
      propertyPath: "schedulerReplicas",
      reason: `${replicas} is too few; the scheduler runs at least 2 replicas`,
    });
  }
}

/** Check the node agent driver is one the runtime has. */
export function validateNodeAgentDriver(driver: string | undefined): void {
  const known: readonly string[] = Object.values(NodeAgentDriver);
  if (driver !== undefined && !known.includes(driver)) {
    throw new pulumi.InputPropertyError({
      propertyPath: "nodeAgentDriver",
      reason: `${JSON.stringify(driver)} is not a driver; use one of ${known.join(", ")}`,
    });
  }
}

/** Check external etcd endpoints: a non-empty list of http(s) URLs. */
export function validateEtcdEndpoints(endpoints: string[] | undefined): void {
  if (endpoints === undefined) return;
  if (endpoints.length === 0) {
    throw new pulumi.InputPropertyError({
      propertyPath: "etcdEndpoints",
      reason: "is empty; leave it out to run etcd in the cluster",
    });
  }
  endpoints.forEach((e, i) => {
    if (!/^https?:\/\/[^/\s]+$/.test(e)) {
      throw new pulumi.InputPropertyError({
        propertyPath: `etcdEndpoints[${i}]`,
        reason: `${JSON.stringify(e)} is not an etcd URL like "https://etcd-0:2379"`,
      });
    }
  });
}

/** What {@link createRuntimeDeployment} made. */
export interface RuntimeDeploymentResult {
  namespace: k8s.core.v1.Namespace;
  etcdEndpoints: string;
  schedulerUrl: string;
  xdsHost: string;
  xdsPort: number;
}

const ETCD_MEMBERS = 3;
/** Pod template annotation: a checksum of the tokens the pod reads from the Secret. */
export const TOKEN_CHECKSUM_ANNOTATION = "shardworks.dev/token-checksum";

/** The key of the node agents' API token in the token Secret. */
export const AGENT_TOKEN_KEY = "agent-token";

/** The node agents' API token: HMAC-SHA256 of a fixed label under the platform token. */
export function agentTokenOf(platformToken: string): string {
  return createHmac("sha256", platformToken).update("shardworks node agent API").digest("hex");
}

/** A port a runtime process listens on, exposed by its container and its Service. */
interface RuntimePort {
  name: string;
  port: number;
  /** The Service port's `appProtocol`, when there is one (e.g. `grpc`). */
  appProtocol?: string;
}
/** Where the node agent keeps its state (a hostPath, so images survive pod restarts). */
const NODE_AGENT_DATA_DIR = NODE_AGENT_HOST_PATHS.state;

/**
 * The routing controller's baseline: each service at its in-cluster Service address, or, for a
 * service routed between services (a `selector`, ADR 0012), at `<service>-baseline` with the
 * in-cluster host names its virtual host answers.
 */
export function baselineDestinations(
  services: Record<string, BaselineService>,
): { name: string; destination: string; hosts?: string[] }[] {
  return routingBaseline(services);
}
const ns = SYSTEM_NAMESPACE;
const fqdn = (service: string) => `${service}.${ns}.svc.cluster.local`;

/** Build the runtime's objects as children of `parent`. */
export function createRuntimeDeployment(
  name: string,
  args: RuntimeDeploymentArgs,
  parent: pulumi.Resource,
): RuntimeDeploymentResult {
  const skip = awaitAnnotations(args.skipAwait);
  const image =
    args.image !== undefined
      ? pulumi.output(args.image)
      : pulumi.interpolate`${args.imageRepository}:${args.version}`;
  const namespace = new k8s.core.v1.Namespace(
    `${name}-namespace`,
    {
      metadata: {
        name: ns,
        labels: {
          ...appLabels(name, "runtime"),
          // The node agent needs /dev/kvm; nothing else here is privileged.
          "pod-security.kubernetes.io/enforce": "privileged",
        },
        annotations: skip,
      },
    },
    { parent },
  );
  const inNs = { parent, dependsOn: [namespace] };
  const meta = (component: string, extra: { name: string }) => ({
    ...extra,
    namespace: ns,
    labels: appLabels(name, component),
    annotations: skip,
  });
  const selectorOf = (component: string) => ({
    "app.kubernetes.io/name": component,
    "app.kubernetes.io/instance": name,
  });
  const serviceAccount = (component: string, automount: boolean) =>
    new k8s.core.v1.ServiceAccount(
      `${name}-${component}-sa`,
      {
        metadata: {
          name: `shardworks-${component}`,
          namespace: ns,
          labels: appLabels(name, component),
        },
        automountServiceAccountToken: automount,
      },
      inNs,
    );

  const tokenSecret = new k8s.core.v1.Secret(
    `${name}-platform-token`,
    {
      metadata: {
        name: RuntimeNames.tokenSecret,
        namespace: ns,
        labels: appLabels(name, "runtime"),
      },
      type: "Opaque",
      stringData: {
        token: pulumi.secret(args.platformToken),
        // The node agents' API token, derived from the platform token (stable across ups, so
        // no churn): the agents get this key only, never the platform token itself.
        [AGENT_TOKEN_KEY]: pulumi.secret(pulumi.output(args.platformToken).apply(agentTokenOf)),
      },
    },
    inNs,
  );

  // etcd: a 3-member StatefulSet, unless the stack gives the endpoints of an existing one.
  let etcdEndpoints: string;
  const etcdDeps: pulumi.Resource[] = [];
  if (args.etcdEndpoints !== undefined) {
    etcdEndpoints = args.etcdEndpoints.join(",");
  } else {
    const members = Array.from({ length: ETCD_MEMBERS }, (_, i) => `${RuntimeNames.etcd}-${i}`);
    const peer = (m: string) => `http://${m}.${fqdn(RuntimeNames.etcd)}:${Ports.etcdPeer}`;
    etcdEndpoints = members
      .map((m) => `http://${m}.${fqdn(RuntimeNames.etcd)}:${Ports.etcdClient}`)
      .join(",");
    const etcdSa = serviceAccount("etcd", false);
    const etcdService = new k8s.core.v1.Service(
      `${name}-etcd-svc`,
      {
        metadata: meta("etcd", { name: RuntimeNames.etcd }),
        spec: {
          clusterIP: "None",
          // Members must find each other by DNS before they are ready.
          publishNotReadyAddresses: true,
          selector: selectorOf("etcd"),
          ports: [
            { name: "client", port: Ports.etcdClient },
            { name: "peer", port: Ports.etcdPeer },
          ],
        },
      },
      inNs,
    );
    const etcd = new k8s.apps.v1.StatefulSet(
      `${name}-etcd`,
      {
        metadata: meta("etcd", { name: RuntimeNames.etcd }),
        spec: {
          serviceName: RuntimeNames.etcd,
          replicas: ETCD_MEMBERS,
          podManagementPolicy: "Parallel",
          selector: { matchLabels: selectorOf("etcd") },
          template: {
            metadata: { labels: appLabels(name, "etcd") },
            spec: {
              serviceAccountName: "shardworks-etcd",
              securityContext: { runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532 },
              containers: [
                {
                  name: "etcd",
                  image: args.etcdImage ?? "quay.io/coreos/etcd:v3.5.21",
                  command: ["etcd"],
                  args: [
                    "--name=$(POD_NAME)",
                    "--data-dir=/var/lib/etcd",
                    `--listen-client-urls=http://0.0.0.0:${Ports.etcdClient}`,
                    `--listen-peer-urls=http://0.0.0.0:${Ports.etcdPeer}`,
                    `--advertise-client-urls=http://$(POD_NAME).${fqdn(RuntimeNames.etcd)}:${Ports.etcdClient}`,
                    `--initial-advertise-peer-urls=http://$(POD_NAME).${fqdn(RuntimeNames.etcd)}:${Ports.etcdPeer}`,
                    `--initial-cluster=${members.map((m) => `${m}=${peer(m)}`).join(",")}`,
                    "--initial-cluster-state=new",
                    "--initial-cluster-token=shardworks",
                  ],
                  env: [
                    { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                  ],
                  ports: [
                    { name: "client", containerPort: Ports.etcdClient },
                    { name: "peer", containerPort: Ports.etcdPeer },
                  ],
                  ...probes(
                    { httpGet: { path: "/health", port: Ports.etcdClient } },
                    120,
                    // Serializable: a member without quorum is alive, just not ready.
                    { httpGet: { path: "/health?serializable=true", port: Ports.etcdClient } },
                  ),
                  resources: {
                    requests: { cpu: "200m", memory: "256Mi" },
                    limits: { cpu: "1", memory: "1Gi" },
                  },
                  securityContext: restrictedContainer,
                  volumeMounts: [{ name: "data", mountPath: "/var/lib/etcd" }],
                },
              ],
              ...(args.etcdStorage === "ephemeral"
                ? { volumes: [{ name: "data", emptyDir: {} }] }
                : {}),
            },
          },
          ...(args.etcdStorage === "ephemeral"
            ? {}
            : {
                volumeClaimTemplates: [
                  {
                    metadata: { name: "data" },
                    spec: {
                      accessModes: ["ReadWriteOnce"],
                      resources: { requests: { storage: "4Gi" } },
                    },
                  },
                ],
              }),
        },
      },
      { parent, dependsOn: [namespace, etcdSa, etcdService] },
    );
    etcdDeps.push(etcd);
  }

  const runtimeEnv = [
    { name: Env.etcdEndpoints, value: etcdEndpoints },
    // Reported by /healthz and routers/<name>; the rollout's gates compare it.
    { name: Env.runtimeVersion, value: args.version },
  ];
  // Env from a Secret is read at container start only: a checksum of the tokens in the pod
  // templates of the processes that read them rolls those pods when the platform token changes.
  const tokenAnnotations = {
    [TOKEN_CHECKSUM_ANNOTATION]: pulumi.secret(
      pulumi
        .output(args.platformToken)
        .apply((token) => createHash("sha256").update(agentTokenOf(token)).digest("hex")),
    ),
  };
  const agentTokenEnv = {
    name: Env.agentToken,
    valueFrom: { secretKeyRef: { name: RuntimeNames.tokenSecret, key: AGENT_TOKEN_KEY } },
  };
  // Only the scheduler checks tokens; the other processes never see the platform token.
  const tokenEnv = {
    name: Env.platformToken,
    valueFrom: { secretKeyRef: { name: RuntimeNames.tokenSecret, key: "token" } },
  };
  const listenAnywhere = { name: Env.listenHost, value: "0.0.0.0" };
  const small = {
    requests: { cpu: "100m", memory: "128Mi" },
    limits: { cpu: "1", memory: "512Mi" },
  };
  // Every runtime workload waits for its ServiceAccount, the token Secret and etcd.
  const runtimeDeps = (serviceAccount: pulumi.Resource) => ({
    parent,
    dependsOn: [namespace, serviceAccount, tokenSecret, ...etcdDeps],
  });
  /** A runtime process's container: the runtime image run as `args`, its port and probes. */
  const runtimeContainer = (c: {
    component: string;
    args: string[];
    env: k8s.types.input.core.v1.EnvVar[];
    port: RuntimePort;
    probe: ProbeCheck;
    resources?: k8s.types.input.core.v1.ResourceRequirements;
    securityContext?: k8s.types.input.core.v1.SecurityContext;
    volumeMounts?: k8s.types.input.core.v1.VolumeMount[];
  }): k8s.types.input.core.v1.Container => ({
    name: c.component,
    image,
    args: c.args,
    env: c.env,
    ports: [{ name: c.port.name, containerPort: c.port.port }],
    ...probes(c.probe, 120),
    resources: c.resources ?? small,
    securityContext: c.securityContext ?? restrictedContainer,
    ...(c.volumeMounts === undefined ? {} : { volumeMounts: c.volumeMounts }),
  });
  /**
   * A replicated runtime service: a Deployment of one {@link runtimeContainer} and a Service
   * of the same name in front of its port.
   */
  const runtimeService = (
    component: string,
    s: {
      objectName: string;
      replicas: number;
      serviceAccount: pulumi.Resource;
      /** Mount the ServiceAccount's API token (only a process that calls the Kubernetes API). */
      apiToken: boolean;
      container: Parameters<typeof runtimeContainer>[0];
      /** Annotations of the pod template (a change rolls the pods). */
      podAnnotations?: Record<string, pulumi.Input<string>>;
    },
  ) => {
    const port = s.container.port;
    new k8s.apps.v1.Deployment(
      `${name}-${component}`,
      {
        metadata: meta(component, { name: s.objectName }),
        spec: {
          replicas: s.replicas,
          selector: { matchLabels: selectorOf(component) },
          template: {
            metadata: {
              labels: appLabels(name, component),
              ...(s.podAnnotations === undefined ? {} : { annotations: s.podAnnotations }),
            },
            spec: {
              serviceAccountName: `shardworks-${component}`,
              ...(s.apiToken ? {} : { automountServiceAccountToken: false }),
              containers: [runtimeContainer(s.container)],
            },
          },
        },
      },
      runtimeDeps(s.serviceAccount),
    );
    new k8s.core.v1.Service(
      `${name}-${component}-svc`,
      {
        metadata: meta(component, { name: s.objectName }),
        spec: {
          selector: selectorOf(component),
          ports: [
            {
              name: port.name,
              port: port.port,
              targetPort: port.port,
              ...(port.appProtocol === undefined ? {} : { appProtocol: port.appProtocol }),
            },
          ],
        },
      },
      inNs,
    );
  };

  // Scheduler: the HTTP API and the elected placer; needs no Kubernetes API access.
  const schedulerSa = serviceAccount("scheduler", false);
  runtimeService("scheduler", {
    objectName: RuntimeNames.scheduler,
    podAnnotations: tokenAnnotations,
    replicas: args.schedulerReplicas ?? 2,
    serviceAccount: schedulerSa,
    apiToken: false,
    container: {
      component: "scheduler",
      args: ["scheduler"],
      env: [
        ...runtimeEnv,
        tokenEnv,
        agentTokenEnv,
        listenAnywhere,
        { name: Env.listenPort, value: String(Ports.schedulerApi) },
      ],
      port: { name: "http", port: Ports.schedulerApi },
      probe: { httpGet: { path: "/healthz", port: Ports.schedulerApi } },
    },
  });

  // Node agent: one per microVM node, the platform's only privileged container (/dev/kvm).
  const nodeAgentSa = serviceAccount("node-agent", false);
  new k8s.apps.v1.DaemonSet(
    `${name}-node-agent`,
    {
      metadata: meta("node-agent", { name: RuntimeNames.nodeAgent }),
      spec: {
        selector: { matchLabels: selectorOf("node-agent") },
        template: {
          metadata: { labels: appLabels(name, "node-agent"), annotations: tokenAnnotations },
          spec: {
            serviceAccountName: "shardworks-node-agent",
            automountServiceAccountToken: false,
            nodeSelector: { [MICROVM_KEY]: "true" },
            tolerations: [{ key: MICROVM_KEY, operator: "Exists", effect: "NoSchedule" }],
            containers: [
              runtimeContainer({
                component: "node-agent",
                args: ["node-agent"],
                env: [
                  ...runtimeEnv,
                  // The agent API (logs, migration) demands the token the scheduler sends.
                  agentTokenEnv,
                  { name: Env.nodeName, valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
                  // The agent advertises its listen address to the scheduler: the pod IP.
                  { name: Env.listenHost, valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
                  { name: Env.listenPort, value: String(Ports.nodeAgent) },
                  { name: Env.driver, value: args.nodeAgentDriver ?? NodeAgentDriver.Firecracker },
                  { name: Env.dataDir, value: NODE_AGENT_DATA_DIR },
                ],
                port: { name: "http", port: Ports.nodeAgent },
                probe: { httpGet: { path: "/healthz", port: Ports.nodeAgent } },
                resources: {
                  requests: { cpu: "250m", memory: "256Mi" },
                  limits: { cpu: "2", memory: "1Gi" },
                },
                // Opening /dev/kvm and setting up jails/taps needs the device cgroup and
                // capabilities a device plugin would otherwise grant.
                securityContext: { privileged: true },
                volumeMounts: [
                  { name: "kvm", mountPath: NODE_AGENT_HOST_PATHS.kvm },
                  { name: "state", mountPath: NODE_AGENT_DATA_DIR },
                ],
              }),
            ],
            volumes: [
              { name: "kvm", hostPath: { path: NODE_AGENT_HOST_PATHS.kvm, type: "CharDevice" } },
              {
                name: "state",
                hostPath: { path: NODE_AGENT_HOST_PATHS.state, type: "DirectoryOrCreate" },
              },
            ],
          },
        },
      },
    },
    runtimeDeps(nodeAgentSa),
  );

  // Routing controller: xDS for the gateway, plus the reapers (TTL and JIT grants).
  const routingSa = serviceAccount("routing", true);
  // RBAC cannot select by annotation: the reaper checks shardworks.dev/expires-at itself and
  // deletes only bindings that carry it.
  const reaperRole = new k8s.rbac.v1.ClusterRole(
    `${name}-reaper-role`,
    {
      metadata: {
        name: "shardworks:access-reaper",
        labels: appLabels(name, "routing"),
        annotations: { "shardworks.dev/deletes-only-annotated": EXPIRES_AT_ANNOTATION },
      },
      rules: [
        {
          apiGroups: ["rbac.authorization.k8s.io"],
          resources: ["rolebindings", "clusterrolebindings"],
          verbs: ["get", "list", "watch", "delete"],
        },
      ],
    },
    { parent },
  );
  new k8s.rbac.v1.ClusterRoleBinding(
    `${name}-reaper-binding`,
    {
      metadata: { name: "shardworks:access-reaper", labels: appLabels(name, "routing") },
      roleRef: {
        apiGroup: "rbac.authorization.k8s.io",
        kind: "ClusterRole",
        name: "shardworks:access-reaper",
      },
      subjects: [{ kind: "ServiceAccount", name: "shardworks-routing", namespace: ns }],
    },
    { parent, dependsOn: [reaperRole, routingSa] },
  );
  runtimeService("routing", {
    objectName: RuntimeNames.routing,
    replicas: 2,
    serviceAccount: routingSa,
    // The reapers delete expired grants through the Kubernetes API.
    apiToken: true,
    container: {
      component: "routing",
      args: ["routing-controller"],
      env: [
        ...runtimeEnv,
        listenAnywhere,
        { name: Env.listenPort, value: String(Ports.xds) },
        // Each replica registers routers/<pod name> at <pod IP>:<port>: the scheduler asks every
        // replica's CSDS (the rollout's xds-acked gate, `shardworks xds clients`).
        { name: Env.podIp, valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
        { name: Env.routerName, valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
        // The pod IP alone: the process adds its port (and brackets an IPv6 address).
        { name: Env.advertiseAddress, value: `$(${Env.podIp})` },
        {
          name: Env.baselineServices,
          value: pulumi
            .output(args.baselineServices ?? {})
            .apply((services) => JSON.stringify(baselineDestinations(services))),
        },
      ],
      port: { name: "grpc-xds", port: Ports.xds, appProtocol: "grpc" },
      // grpc.health.v1 on the ADS port: ready once the xDS server serves.
      probe: { grpc: { port: Ports.xds } },
    },
  });

  // NetworkPolicies: deny all ingress, then open exactly the paths the design uses.
  const policy = (role: string, spec: k8s.types.input.networking.v1.NetworkPolicySpec) =>
    new k8s.networking.v1.NetworkPolicy(
      `${name}-netpol-${role}`,
      { metadata: { name: role, namespace: ns, labels: appLabels(name, "runtime") }, spec },
      inNs,
    );
  const fromRuntime = {
    podSelector: { matchLabels: { "app.kubernetes.io/part-of": "shardworks" } },
  };
  policy("default-deny-ingress", { podSelector: {}, policyTypes: ["Ingress"] });
  policy("allow-etcd", {
    podSelector: { matchLabels: selectorOf("etcd") },
    policyTypes: ["Ingress"],
    ingress: [
      {
        from: [fromRuntime],
        ports: [{ port: Ports.etcdClient }, { port: Ports.etcdPeer }],
      },
    ],
  });
  // The scheduler API is token-authenticated and called by shard stacks and the CLI.
  policy("allow-scheduler-api", {
    podSelector: { matchLabels: selectorOf("scheduler") },
    policyTypes: ["Ingress"],
    ingress: [{ ports: [{ port: Ports.schedulerApi }] }],
  });
  policy("allow-xds-from-gateway", {
    podSelector: { matchLabels: selectorOf("routing") },
    policyTypes: ["Ingress"],
    ingress: [
      {
        from: [
          {
            namespaceSelector: {
              matchLabels: { "kubernetes.io/metadata.name": args.gatewayNamespace },
            },
          },
          // The scheduler asks each replica's CSDS (same port) for /v1/xds/clients.
          { podSelector: { matchLabels: selectorOf("scheduler") } },
        ],
        ports: [{ port: Ports.xds }],
      },
    ],
  });
  policy("allow-node-agent", {
    podSelector: { matchLabels: selectorOf("node-agent") },
    policyTypes: ["Ingress"],
    ingress: [{ from: [fromRuntime], ports: [{ port: Ports.nodeAgent }] }],
  });

  return {
    namespace,
    etcdEndpoints,
    schedulerUrl: `http://${fqdn(RuntimeNames.scheduler)}:${Ports.schedulerApi}`,
    xdsHost: fqdn(RuntimeNames.routing),
    xdsPort: Ports.xds,
  };
}

/** The runtime services of a platform, in `shardworks-system`. */
export class RuntimeDeployment extends pulumi.ComponentResource {
  /** `shardworks-system`. */
  readonly namespace: pulumi.Output<string>;
  /** Comma-separated etcd client URLs. */
  readonly etcdEndpoints: pulumi.Output<string>;
  /** In-cluster URL of the scheduler API. */
  readonly schedulerUrl: pulumi.Output<string>;
  /** In-cluster host of the routing controller's xDS server. */
  readonly xdsHost: pulumi.Output<string>;
  /** Port of the xDS server. */
  readonly xdsPort: pulumi.Output<number>;

  constructor(name: string, args: RuntimeDeploymentArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardworks:components:RuntimeDeployment", name, {}, opts);
    validateSchedulerReplicas(args.schedulerReplicas ?? 2);
    validateEtcdEndpoints(args.etcdEndpoints);
    validateNodeAgentDriver(args.nodeAgentDriver);
    const result = createRuntimeDeployment(name, args, this);
    this.namespace = result.namespace.metadata.name;
    this.etcdEndpoints = pulumi.output(result.etcdEndpoints);
    this.schedulerUrl = pulumi.output(result.schedulerUrl);
    this.xdsHost = pulumi.output(result.xdsHost);
    this.xdsPort = pulumi.output(result.xdsPort);
    this.registerOutputs({
      namespace: this.namespace,
      etcdEndpoints: this.etcdEndpoints,
      schedulerUrl: this.schedulerUrl,
      xdsHost: this.xdsHost,
      xdsPort: this.xdsPort,
    });
  }
}
