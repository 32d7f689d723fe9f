/* eslint-disable @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-return --
   Recorded resource inputs are untyped JSON; tests read into them freely. */
import test from "ava";
import { createHash } from "node:crypto";
import {
  AGENT_TOKEN_KEY,
  Env,
  MICROVM_KEY,
  RuntimeDeployment,
  SKIP_AWAIT_ANNOTATION,
  TOKEN_CHECKSUM_ANNOTATION,
  agentTokenOf,
  validateEtcdEndpoints,
  validateNodeAgentDriver,
  validateSchedulerReplicas,
} from "../../components";
import { podSpecOf } from "./helpers/k8s-schema";
import { named, ofType, recordBuild, recorded, unwrap } from "./helpers/pulumi";
import { reasonOf, testObjectsMatchOpenApi } from "./helpers/component-tests";

let runtime: RuntimeDeployment;
let external: RuntimeDeployment;
let processNodes: RuntimeDeployment;

test.before(async () => {
  ({ runtime, external, processNodes } = await recordBuild(() => ({
    runtime: new RuntimeDeployment("rt", {
      version: "0.1.0",
      imageRepository: "ghcr.io/shardworks/runtime",
      platformToken: "t".repeat(40),
      gatewayNamespace: "shardworks-gateway",
      schedulerReplicas: 3,
      skipAwait: true,
    }),
    external: new RuntimeDeployment("ext", {
      version: "0.2.0",
      imageRepository: "registry.local/runtime",
      platformToken: "t".repeat(40),
      gatewayNamespace: "gw",
      etcdEndpoints: ["https://etcd-a:2379", "https://etcd-b:2379"],
    }),
    processNodes: new RuntimeDeployment("proc", {
      version: "0.1.0",
      imageRepository: "ghcr.io/shardworks/runtime",
      platformToken: "t".repeat(40),
      gatewayNamespace: "shardworks-gateway",
      nodeAgentDriver: "process",
      insecureRegistries: ["10.100.0.1:5055", "registry.lan"],
    }),
  })));
});

const rtChildren = () => recorded.filter((r) => r.parent === "rt");

test("children are named rt-<role>, parented to the component, in shardworks-system", (t) => {
  t.is(named("rt").type, "shardworks:components:RuntimeDeployment");
  for (const child of rtChildren()) {
    t.true(child.name.startsWith("rt-"), child.name);
    const meta = child.inputs["metadata"];
    if (child.type.endsWith(":Namespace")) t.is(meta.name, "shardworks-system");
    else if (!child.type.includes(":Cluster"))
      t.is(meta.namespace, "shardworks-system", child.name);
  }
});

test("etcd: a 3-member StatefulSet behind a headless Service", (t) => {
  const sts = named("rt-etcd");
  t.is(sts.type, "kubernetes:apps/v1:StatefulSet");
  t.is(sts.inputs["spec"].replicas, 3);
  const args: string[] = podSpecOf(sts.inputs)!.containers[0].args;
  t.true(
    args.includes(
      "--initial-cluster=" +
        [0, 1, 2]
          .map(
            (i) =>
              `shardworks-etcd-${i}=http://shardworks-etcd-${i}.shardworks-etcd.shardworks-system.svc.cluster.local:2380`,
          )
          .join(","),
    ),
  );
  const svc = named("rt-etcd-svc");
  t.is(svc.inputs["spec"].clusterIP, "None");
  t.true(svc.inputs["spec"].publishNotReadyAddresses);
});

test("external etcd: no StatefulSet, endpoints passed to every runtime process", async (t) => {
  t.is(ofType("kubernetes:apps/v1:StatefulSet", "ext").length, 0);
  t.is(await unwrap(external.etcdEndpoints), "https://etcd-a:2379,https://etcd-b:2379");
  for (const name of ["ext-scheduler", "ext-node-agent", "ext-routing"]) {
    const env = podSpecOf(named(name).inputs)!.containers[0].env;
    t.deepEqual(
      env.find((e: { name: string }) => e.name === Env.etcdEndpoints),
      { name: Env.etcdEndpoints, value: "https://etcd-a:2379,https://etcd-b:2379" },
      name,
    );
    t.is(podSpecOf(named(name).inputs)!.containers[0].image, "registry.local/runtime:0.2.0");
    // The version the gates compare: what /healthz and routers/<name> report.
    t.deepEqual(
      env.find((e: { name: string }) => e.name === Env.runtimeVersion),
      { name: Env.runtimeVersion, value: "0.2.0" },
      name,
    );
  }
});

test("routing replicas register at their pod IP under their pod name", (t) => {
  const env = podSpecOf(named("rt-routing").inputs)!.containers[0].env as {
    name: string;
    value?: string;
    valueFrom?: unknown;
  }[];
  const byName = new Map(env.map((e) => [e.name, e]));
  t.deepEqual(byName.get(Env.podIp)?.valueFrom, { fieldRef: { fieldPath: "status.podIP" } });
  t.deepEqual(byName.get(Env.routerName)?.valueFrom, { fieldRef: { fieldPath: "metadata.name" } });
  // Kubernetes expands $(VAR) from variables defined before it in the list.
  t.is(byName.get(Env.advertiseAddress)?.value, `$(${Env.podIp})`);
  t.true(
    env.findIndex((e) => e.name === Env.podIp) <
      env.findIndex((e) => e.name === Env.advertiseAddress),
  );
});

test("scheduler: ≥2 replicas, token from the Secret, probes, requests and limits", async (t) => {
  const deployment = ofType("kubernetes:apps/v1:Deployment", "rt").find(
    (r) => r.name === "rt-scheduler",
  )!;
  t.is(deployment.inputs["spec"].replicas, 3);
  const c = podSpecOf(deployment.inputs)!.containers[0];
  t.deepEqual(c.args, ["scheduler"]);
  t.deepEqual(c.env.find((e: { name: string }) => e.name === Env.platformToken).valueFrom, {
    secretKeyRef: { name: "shardworks-platform-token", key: "token" },
  });
  t.is(c.readinessProbe.httpGet.path, "/healthz");
  // A slow start on a loaded node is waited for (2 min), not killed by liveness and restarted.
  t.deepEqual(c.startupProbe, {
    httpGet: { path: "/healthz", port: c.readinessProbe.httpGet.port },
    periodSeconds: 2,
    failureThreshold: 60,
  });
  t.is(c.livenessProbe.initialDelaySeconds, undefined, "liveness waits for startup instead");
  t.truthy(c.resources.requests.cpu && c.resources.limits.memory);
  t.is(
    await unwrap(runtime.schedulerUrl),
    "http://shardworks-scheduler.shardworks-system.svc.cluster.local:8080",
  );
  const secret = named("rt-platform-token").inputs;
  t.is(secret["metadata"].name, "shardworks-platform-token");
  t.is(secret["stringData"].token, "t".repeat(40));
  t.is(secret["stringData"][AGENT_TOKEN_KEY], agentTokenOf("t".repeat(40)));
  t.not(agentTokenOf("t".repeat(40)), "t".repeat(40));
  t.is(agentTokenOf("t".repeat(40)).length, 64);
});

test("node agent: only on microvm nodes, tolerates the taint, mounts /dev/kvm, knows its node", (t) => {
  const ds = named("rt-node-agent");
  t.is(ds.type, "kubernetes:apps/v1:DaemonSet");
  const pod = podSpecOf(ds.inputs)!;
  t.deepEqual(pod.nodeSelector, { [MICROVM_KEY]: "true" });
  t.deepEqual(pod.tolerations, [{ key: MICROVM_KEY, operator: "Exists", effect: "NoSchedule" }]);
  const kvm = pod.volumes.find(
    (v: { hostPath?: { path: string } }) => v.hostPath?.path === "/dev/kvm",
  );
  t.deepEqual(kvm.hostPath, { path: "/dev/kvm", type: "CharDevice" });
  const c = pod.containers[0];
  // Its sandboxes nest in its cgroup: no pod limit that would cap them all together.
  t.deepEqual(c.resources, { requests: { cpu: "250m", memory: "256Mi" } });
  t.true(
    c.volumeMounts.some(
      (m: { name: string; mountPath: string }) => m.name === kvm.name && m.mountPath === "/dev/kvm",
    ),
  );
  t.deepEqual(c.env.find((e: { name: string }) => e.name === Env.nodeName).valueFrom, {
    fieldRef: { fieldPath: "spec.nodeName" },
  });
});

test("node agent with the process driver: no /dev/kvm needed (nodes without KVM run it), plain-HTTP registries passed on", (t) => {
  t.truthy(processNodes);
  const pod = podSpecOf(named("proc-node-agent").inputs)!;
  const paths = pod.volumes.map((v: { hostPath?: { path: string } }) => v.hostPath?.path);
  t.deepEqual(paths, ["/var/lib/shardworks"]);
  const c = pod.containers[0];
  t.deepEqual(
    c.volumeMounts.map((m: { mountPath: string }) => m.mountPath),
    ["/var/lib/shardworks"],
  );
  const env = (name: string) => c.env.find((e: { name: string }) => e.name === name)?.value;
  t.is(env(Env.driver), "process");
  t.is(env(Env.registryInsecure), "10.100.0.1:5055,registry.lan");
  // Without insecure registries the variable is not set at all (the default driver's pod above).
  const defaults = podSpecOf(named("rt-node-agent").inputs)!.containers[0];
  t.is(defaults.env.find((e: { name: string }) => e.name === Env.driver)?.value, "firecracker");
  t.false(defaults.env.some((e: { name: string }) => e.name === Env.registryInsecure));
});

test("only the node agent is privileged; everything else runs restricted", (t) => {
  for (const r of recorded.filter((r) => podSpecOf(r.inputs) !== undefined)) {
    for (const c of podSpecOf(r.inputs)!.containers) {
      if (r.name.endsWith("-node-agent")) {
        // Privileged and root: a non-root user of the (non-root) image writes no cgroup.
        t.like(c.securityContext, { privileged: true, runAsUser: 0 }, r.name);
      } else {
        t.false(c.securityContext.privileged ?? false, r.name);
        t.false(c.securityContext.allowPrivilegeEscalation, r.name);
        t.deepEqual(c.securityContext.capabilities.drop, ["ALL"], r.name);
      }
    }
  }
});

test("least privilege: only the routing controller gets an API token, to reap annotated bindings", (t) => {
  const accounts = ofType("kubernetes:core/v1:ServiceAccount", "rt");
  t.deepEqual(
    accounts
      .map((a) => [a.inputs["metadata"].name, a.inputs["automountServiceAccountToken"]])
      .sort(),
    [
      ["shardworks-etcd", false],
      ["shardworks-node-agent", false],
      ["shardworks-routing", true],
      ["shardworks-scheduler", false],
    ],
  );
  t.deepEqual(named("rt-reaper-role").inputs["rules"], [
    {
      apiGroups: ["rbac.authorization.k8s.io"],
      resources: ["rolebindings", "clusterrolebindings"],
      verbs: ["get", "list", "watch", "delete"],
    },
  ]);
  t.deepEqual(named("rt-reaper-binding").inputs["subjects"], [
    { kind: "ServiceAccount", name: "shardworks-routing", namespace: "shardworks-system" },
  ]);
});

test("NetworkPolicies: default deny, xDS only from the gateway namespace and the scheduler", (t) => {
  const policies = new Map(
    ofType("kubernetes:networking.k8s.io/v1:NetworkPolicy", "rt").map((r) => [
      r.inputs["metadata"].name,
      r.inputs["spec"],
    ]),
  );
  t.deepEqual(policies.get("default-deny-ingress"), { podSelector: {}, policyTypes: ["Ingress"] });
  t.deepEqual(policies.get("allow-xds-from-gateway").ingress, [
    {
      from: [
        {
          namespaceSelector: {
            matchLabels: { "kubernetes.io/metadata.name": "shardworks-gateway" },
          },
        },
        {
          podSelector: {
            matchLabels: {
              "app.kubernetes.io/instance": "rt",
              "app.kubernetes.io/name": "scheduler",
            },
          },
        },
      ],
      ports: [{ port: 18000 }],
    },
  ]);
  t.truthy(policies.get("allow-etcd"));
  t.truthy(policies.get("allow-node-agent"));
});

test("skipAwait annotates workloads and Services only when asked", (t) => {
  for (const name of [
    "rt-scheduler",
    "rt-scheduler-svc",
    "rt-node-agent",
    "rt-routing",
    "rt-etcd",
    "rt-namespace",
  ]) {
    t.is(named(name).inputs["metadata"].annotations[SKIP_AWAIT_ANNOTATION], "true", name);
  }
  t.is(named("ext-node-agent").inputs["metadata"].annotations[SKIP_AWAIT_ANNOTATION], undefined);
});

testObjectsMatchOpenApi({ atLeast: 30 });

const bad: [string, () => unknown, string][] = [
  [
    "one scheduler",
    () => validateSchedulerReplicas(1),
    "schedulerReplicas: 1 is too few; the scheduler runs at least 2 replicas",
  ],
  [
    "no endpoints",
    () => validateEtcdEndpoints([]),
    "etcdEndpoints: is empty; leave it out to run etcd in the cluster",
  ],
  [
    "bad endpoint",
    () => validateEtcdEndpoints(["etcd:2379"]),
    'etcdEndpoints[0]: "etcd:2379" is not an etcd URL like "https://etcd-0:2379"',
  ],
];
for (const [title, fn, expected] of bad) {
  test(`validator rejects: ${title}`, (t) => t.is(reasonOf(fn), expected));
}
test("validators accept good values", (t) => {
  t.is(
    reasonOf(() => validateSchedulerReplicas(2)),
    "no error",
  );
  t.is(
    reasonOf(() => validateEtcdEndpoints(undefined)),
    "no error",
  );
  t.is(
    reasonOf(() => validateEtcdEndpoints(["http://10.0.0.1:2379"])),
    "no error",
  );
});

test("only the scheduler gets the platform token; the node agent driver is validated", (t) => {
  const hasToken = (name: string) =>
    podSpecOf(named(name).inputs)!.containers[0].env.some(
      (e: { name: string }) => e.name === Env.platformToken,
    );
  t.true(hasToken("rt-scheduler"));
  t.false(hasToken("rt-node-agent"));
  t.false(hasToken("rt-routing"));
  // The agents' API token: the scheduler sends it, the agents demand it; routing never needs it.
  const agentToken = (name: string) =>
    podSpecOf(named(name).inputs)!.containers[0].env.find(
      (e: { name: string }) => e.name === Env.agentToken,
    )?.valueFrom;
  const fromSecret = { secretKeyRef: { name: "shardworks-platform-token", key: AGENT_TOKEN_KEY } };
  t.deepEqual(agentToken("rt-scheduler"), fromSecret);
  t.deepEqual(agentToken("rt-node-agent"), fromSecret);
  t.is(agentToken("rt-routing"), undefined);
  // A new platform token rolls the pods that read tokens from the Secret (env is read at start).
  const checksum = (name: string) =>
    podSpecOf(named(name).inputs) &&
    named(name).inputs["spec"].template.metadata.annotations?.[TOKEN_CHECKSUM_ANNOTATION];
  const expected = createHash("sha256")
    .update(agentTokenOf("t".repeat(40)))
    .digest("hex");
  t.is(checksum("rt-scheduler"), expected);
  t.is(checksum("rt-node-agent"), expected);
  t.is(checksum("rt-routing"), undefined, "the routing controller reads no token");
  t.notThrows(() => validateNodeAgentDriver("qemu"));
  const error = t.throws(() => validateNodeAgentDriver("kvm"));
  t.is(error?.message, '"kvm" is not a driver; use one of firecracker, qemu, process');
});
