import test, { type ExecutionContext } from "ava";
import * as k8s from "@kubernetes/client-node";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { type Cluster, clusterStatus, startCluster, stopCluster } from "../../scripts/cluster";
import { hierarchies } from "../../scripts/cluster/cgroups";
import { buildImage } from "../../scripts/images/build";
import { ensureTestHttpImage } from "../../scripts/images/catalog";
import { baseEtcEntries } from "../../scripts/images/rootfs";
import { statusOf } from "../helpers/kube";

function apiFor(kubeconfigPath: string) {
  const config = new k8s.KubeConfig();
  config.loadFromFile(kubeconfigPath);
  return {
    core: config.makeApiClient(k8s.CoreV1Api),
    apps: config.makeApiClient(k8s.AppsV1Api),
    rbac: config.makeApiClient(k8s.RbacAuthorizationV1Api),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    await sleep(250);
  }
  throw new Error(`${what} not within ${timeoutMs / 1000} s ${last}`);
}

function run(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: "utf8" });
  return result.stdout ?? "";
}

/** The node's pod sandboxes (containerd's CRI keeps a directory per sandbox). */
function sandboxesOf(cluster: Cluster): string[] {
  const dir = join(cluster.dir, "node/containerd/root/io.containerd.grpc.v1.cri/sandboxes");
  return existsSync(dir) ? readdirSync(dir) : [];
}

/** Everything on the machine that belongs to `cluster` (and must be gone after `down`). */
function footprint(cluster: Cluster, sandboxes: readonly string[]) {
  const net = cluster.network;
  const block = net.nodeIP.split(".").slice(0, 2).join(".") + ".";
  const mounts = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((p) => p.startsWith(cluster.dir) || p.includes(net.netns));
  const links = run("ip", ["-o", "link"])
    .split("\n")
    .filter((l) => new RegExp(`^\\d+: (sw${net.slot}|sw${net.slot}n)[@:]`).test(l));
  const netns = run("ip", ["netns", "list"])
    .split("\n")
    .filter((l) => l.split(" ")[0] === net.netns);
  const hostIptables = run("iptables-save", [])
    .split("\n")
    .filter((l) => l.includes(block) || l.includes(net.hostInterface));
  const cgroups = hierarchies()
    .map((h) => join(h, "shardworks-clusters", cluster.name))
    .filter((d) => existsSync(d));
  const processes = readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .flatMap((p) => {
      try {
        const cgroup = readFileSync(`/proc/${p}/cgroup`, "utf8");
        const cmdline = readFileSync(`/proc/${p}/cmdline`, "utf8").replaceAll("\0", " ");
        const ours =
          cgroup.includes(`/shardworks-clusters/${cluster.name}/`) || cmdline.includes(cluster.dir);
        return ours ? [`${p} ${cmdline.slice(0, 200)}`] : [];
      } catch {
        return [];
      }
    });
  // Outside the node's directory: CNI result caches and the kubelet's log symlinks.
  const cniCaches = ["/var/lib/cni/results", "/var/lib/cni/cache/results"]
    .flatMap((d) => (existsSync(d) ? readdirSync(d) : []))
    .filter((f) => sandboxes.some((id) => f.includes(id)));
  const logLinks = (existsSync("/var/log/containers") ? readdirSync("/var/log/containers") : [])
    .map((f) => join("/var/log/containers", f))
    .filter((f) => readlinkSync(f).startsWith(cluster.dir));
  return { mounts, links, netns, hostIptables, cgroups, processes, cniCaches, logLinks };
}

/** A busybox image with the applets a DNS client pod needs, built and pushed like any image. */
async function clientImage(): Promise<string> {
  const applets = ["sh", "wget", "nslookup", "cat", "sleep"];
  const image = await buildImage(
    {
      name: "e2e-cluster-client",
      tag: "1",
      layers: [
        {
          name: "busybox",
          entries: [
            ...baseEtcEntries(),
            { type: "file", path: "/bin/busybox", from: "/bin/busybox", mode: 0o755 },
            ...applets.map((a) => ({
              type: "symlink" as const,
              path: `/bin/${a}`,
              target: "busybox",
            })),
          ],
        },
      ],
      config: { env: { PATH: "/bin" }, user: "65532:65532" },
    },
    { progress: () => undefined },
  );
  return image.ref;
}

async function podLogs(api: ReturnType<typeof apiFor>, namespace: string, name: string) {
  return api.core.readNamespacedPodLog({ namespace, name });
}

/** A Deployment of the test HTTP image and a Service for it; resolves with the ready pod's IP. */
async function deployWeb(t: ExecutionContext, api: ReturnType<typeof apiFor>, image: string) {
  const namespace = "web";
  await api.core.createNamespace({ body: { metadata: { name: namespace } } });
  const labels = { app: "web" };
  await api.apps.createNamespacedDeployment({
    namespace,
    body: {
      metadata: { name: "web" },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            containers: [
              {
                name: "web",
                image,
                env: [{ name: "TEST_HTTP_MESSAGE", value: "hello from the node" }],
                ports: [{ containerPort: 8080 }],
                readinessProbe: { httpGet: { path: "/healthz", port: 8080 }, periodSeconds: 1 },
              },
            ],
          },
        },
      },
    },
  });
  await api.core.createNamespacedService({
    namespace,
    body: {
      metadata: { name: "web" },
      spec: { selector: labels, ports: [{ port: 80, targetPort: 8080 }] },
    },
  });
  // The Deployment controller makes a ReplicaSet, the ReplicaSet controller a pod, the scheduler
  // binds it, the kubelet runs it: every piece of a real cluster.
  const replicaSets = await eventually("a ReplicaSet", 30_000, async () => {
    const list = await api.apps.listNamespacedReplicaSet({ namespace });
    return list.items.length > 0 ? list.items : undefined;
  });
  t.is(replicaSets[0]?.metadata?.ownerReferences?.[0]?.name, "web");
  const started = Date.now();
  const pod = await eventually("a Ready web pod", 120_000, async () => {
    const list = await api.core.listNamespacedPod({ namespace, labelSelector: "app=web" });
    const ready = list.items.find((p) =>
      p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
    );
    return ready;
  });
  t.log(`web pod Ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  t.is(pod.status?.phase, "Running");
  return { namespace, podIP: pod.status?.podIP ?? "" };
}

test("a local cluster runs pods: RBAC, controllers, DNS, two clusters side by side, and down leaves nothing", async (t) => {
  const [web, client] = [(await ensureTestHttpImage()).ref, await clientImage()];
  const name = `e2e-cluster-${process.pid}`;
  const other = `e2e-cluster-${process.pid}-b`;
  t.teardown(async () => {
    await stopCluster(other, { purge: true, log: () => undefined });
    await stopCluster(name, { purge: true, log: () => undefined });
  });
  const started = Date.now();
  const cluster = await startCluster(name, { log: (line) => t.log(line) });
  t.log(`cluster up in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  // `up` twice is idempotent: same server, same processes.
  const again = await startCluster(name, { log: (line) => t.log(line) });
  t.is(again.server, cluster.server);
  t.deepEqual(await clusterStatus(name), {
    name,
    running: true,
    server: cluster.server,
    ready: true,
    kubeconfig: cluster.kubeconfigPath,
  });

  const admin = apiFor(cluster.kubeconfigPath);
  const alice = apiFor(cluster.kubeconfigPathFor("alice"));
  const bob = apiFor(cluster.kubeconfigPathFor("bob"));
  for (const ns of ["team-a", "team-b"]) {
    await admin.core.createNamespace({ body: { metadata: { name: ns } } });
  }

  // RBAC: alice is authenticated but refused until bound, then only where bound.
  t.is(await statusOf(() => alice.core.listNamespacedConfigMap({ namespace: "team-a" })), 403);
  await admin.rbac.createNamespacedRole({
    namespace: "team-a",
    body: {
      metadata: { name: "configmap-editor" },
      rules: [
        { apiGroups: [""], resources: ["configmaps"], verbs: ["get", "list", "create", "delete"] },
      ],
    },
  });
  await admin.rbac.createNamespacedRoleBinding({
    namespace: "team-a",
    body: {
      metadata: { name: "alice-edits-configmaps" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "configmap-editor" },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "alice" }],
    },
  });
  await alice.core.createNamespacedConfigMap({
    namespace: "team-a",
    body: { metadata: { name: "note" }, data: { by: "alice" } },
  });
  const note = await admin.core.readNamespacedConfigMap({ namespace: "team-a", name: "note" });
  t.deepEqual(note.data, { by: "alice" });
  t.is(
    await statusOf(() =>
      alice.core.createNamespacedConfigMap({
        namespace: "team-b",
        body: { metadata: { name: "n" } },
      }),
    ),
    403,
  );
  t.is(await statusOf(() => bob.core.listNamespacedConfigMap({ namespace: "team-a" })), 403);

  // The resource quota controller runs: a quota gets its status (used counts).
  await admin.core.createNamespacedResourceQuota({
    namespace: "team-a",
    body: { metadata: { name: "quota" }, spec: { hard: { configmaps: "10" } } },
  });
  const used = await eventually("ResourceQuota status", 30_000, async () => {
    const quota = await admin.core.readNamespacedResourceQuota({
      namespace: "team-a",
      name: "quota",
    });
    return quota.status?.used?.configmaps;
  });
  t.is(used, "2"); // alice's note and kube-root-ca.crt, published by its own controller

  // A Deployment becomes a Ready pod whose server answers, at its pod IP and its ClusterIP.
  const { namespace, podIP } = await deployWeb(t, admin, web);
  const direct = await fetch(`http://${podIP}:8080/`);
  t.true((await direct.text()).includes("hello from the node"));
  const service = await admin.core.readNamespacedService({ namespace, name: "web" });
  const viaService = await eventually("the Service's ClusterIP", 30_000, async () => {
    const res = await fetch(`http://${service.spec?.clusterIP ?? ""}:80/healthz`, {
      signal: AbortSignal.timeout(2000),
    });
    return res.ok ? res.text() : undefined;
  });
  t.is(viaService.trim(), "ok");

  // From another pod, the Service resolves by name (CoreDNS) and answers (kube-proxy).
  await admin.core.createNamespacedPod({
    namespace: "team-b",
    body: {
      metadata: { name: "client" },
      spec: {
        restartPolicy: "Never",
        containers: [
          {
            name: "client",
            image: client,
            command: [
              "sh",
              "-c",
              "nslookup web.web.svc.cluster.local && wget -qO- http://web.web/healthz",
            ],
          },
        ],
      },
    },
  });
  const phase = await eventually("the client pod to finish", 90_000, async () => {
    const pod = await admin.core.readNamespacedPod({ namespace: "team-b", name: "client" });
    const p = pod.status?.phase;
    return p === "Succeeded" || p === "Failed" ? p : undefined;
  });
  const logs = await podLogs(admin, "team-b", "client");
  t.is(phase, "Succeeded", logs);
  t.true(logs.includes(service.spec?.clusterIP ?? "no ClusterIP"), logs);
  t.true(logs.trimEnd().endsWith("ok"), logs);

  // Everything of the cluster is on the machine, and kube-proxy's rules are in the node's netns only.
  const sandboxes = sandboxesOf(cluster);
  const during = footprint(cluster, sandboxes);
  t.true(during.mounts.length > 0 && during.links.length === 1 && during.netns.length === 1);
  t.true(during.cgroups.length > 0 && during.processes.length > 5);
  t.true(during.cniCaches.length >= sandboxes.length && sandboxes.length >= 2);
  t.true(during.logLinks.length >= 2);
  t.false(run("iptables-save", []).includes("KUBE-SERVICES"));
  t.true(
    run("nsenter", [`--net=/run/netns/${cluster.network.netns}`, "iptables-save"]).includes(
      "KUBE-SERVICES",
    ),
  );

  // A second cluster alongside: its own addresses, its own node, and the first keeps serving.
  const second = await startCluster(other, { log: (line) => t.log(`[b] ${line}`) });
  t.not(second.network.podCIDR, cluster.network.podCIDR);
  t.not(second.network.netns, cluster.network.netns);
  const secondApi = apiFor(second.kubeconfigPath);
  const secondWeb = await deployWeb(t, secondApi, web);
  t.not(secondWeb.podIP, podIP);
  t.true((await (await fetch(`http://${secondWeb.podIP}:8080/healthz`)).text()).includes("ok"));
  const secondSandboxes = sandboxesOf(second);
  await stopCluster(other, { purge: true, log: (line) => t.log(`[b] ${line}`) });
  t.deepEqual(footprint(second, secondSandboxes), {
    mounts: [],
    links: [],
    netns: [],
    hostIptables: [],
    cgroups: [],
    processes: [],
    cniCaches: [],
    logLinks: [],
  });
  t.true((await (await fetch(`http://${podIP}:8080/healthz`)).text()).includes("ok"));

  // Namespace deletion completes (namespace controller, with a pod to remove).
  await admin.core.deleteNamespace({ name: "team-b" });
  await eventually("team-b to be finalized", 90_000, async () =>
    (await statusOf(() => admin.core.readNamespace({ name: "team-b" }))) === 404 ? true : undefined,
  );

  // down: nothing of the cluster is left on the machine, and status says so.
  const finalSandboxes = sandboxesOf(cluster);
  await stopCluster(name, { log: (line) => t.log(line) });
  t.deepEqual(footprint(cluster, finalSandboxes), {
    mounts: [],
    links: [],
    netns: [],
    hostIptables: [],
    cgroups: [],
    processes: [],
    cniCaches: [],
    logLinks: [],
  });
  t.deepEqual(await clusterStatus(name), { name, running: false });

  // A second start is fast: certificates, tools and images are cached.
  const restarted = Date.now();
  await startCluster(name, { log: (line) => t.log(line) });
  t.log(`second start in ${((Date.now() - restarted) / 1000).toFixed(1)} s`);
});

test("cluster names are validated with a message that says what is allowed", async (t) => {
  await t.throwsAsync(() => startCluster("Bad_Name"), {
    message: /a cluster name is 1-40 lowercase letters, digits or '-'/,
  });
});
