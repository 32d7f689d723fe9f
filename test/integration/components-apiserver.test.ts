/* eslint-disable @typescript-eslint/no-explicit-any --
   Recorded resource inputs and API responses are untyped JSON. */
// Every Kubernetes object the components emit, created for real on a real kube-apiserver with
// strict field validation (unknown or duplicate fields are errors), with RBAC, admission and
// Pod Security admission. The objects are recorded from the components with the Pulumi mock
// (the Pulumi engine's own `up` against an API server is the testbed's e2e test).
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import test from "ava";
import * as k8s from "@pulumi/kubernetes";
import {
  AccessControl,
  BaselineRouting,
  ClusterRoleName,
  DevShard,
  EnvoyGateway,
  JitGrant,
  RuntimeDeployment,
  routedPorts,
  type BaselineService,
} from "../../components";
import { isKubernetesObject, kubernetesSchemaProblems } from "../unit/helpers/k8s-schema";
import { installMocks, recorded, settled } from "../unit/helpers/pulumi";
import { aliceShard, checkoutBaseline } from "../unit/helpers/shards";
import { clusterRequest, startCluster, stopCluster } from "../../scripts/cluster";
import { toolsBinDir } from "../../scripts/tools";

const kubeApiserverBinary = join(toolsBinDir(), "kube-apiserver");

/** REST path of a kind's collection. */
const PLURAL: Record<string, string> = {
  Namespace: "namespaces",
  ServiceAccount: "serviceaccounts",
  Secret: "secrets",
  Service: "services",
  ConfigMap: "configmaps",
  ResourceQuota: "resourcequotas",
  LimitRange: "limitranges",
  Deployment: "deployments",
  StatefulSet: "statefulsets",
  DaemonSet: "daemonsets",
  NetworkPolicy: "networkpolicies",
  Role: "roles",
  RoleBinding: "rolebindings",
  ClusterRole: "clusterroles",
  ClusterRoleBinding: "clusterrolebindings",
  PodDisruptionBudget: "poddisruptionbudgets",
  HorizontalPodAutoscaler: "horizontalpodautoscalers",
};

function collectionPath(object: Record<string, any>): string {
  const apiVersion = String(object["apiVersion"]);
  const group = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  const plural = PLURAL[String(object["kind"])];
  if (plural === undefined)
    throw new Error(`no REST path known for kind ${String(object["kind"])}`);
  const ns = object["metadata"]?.namespace as string | undefined;
  return ns === undefined ? `${group}/${plural}` : `${group}/namespaces/${ns}/${plural}`;
}

/** The emitted objects, in an order the API server accepts (namespaces and roles first). */
async function emittedObjects(): Promise<{ name: string; object: Record<string, any> }[]> {
  await installMocks();
  const now = new Date();
  const access = new AccessControl("access", {
    platformAdmins: [{ kind: "Group", name: "admins" }],
  });
  const runtime = new RuntimeDeployment("rt", {
    version: "0.1.0",
    imageRepository: "ghcr.io/shardworks/runtime",
    platformToken: "t".repeat(40),
    gatewayNamespace: "shardworks-gateway",
    skipAwait: true,
  });
  // A baseline routed between services (ADR 0012), in the app's own namespace (the team's).
  const shop: Record<string, BaselineService> = {
    frontend: {
      image: "shop/frontend:1",
      port: 8080,
      namespace: "shop",
      selector: { app: "frontend" },
    },
    checkout: {
      image: "shop/checkout:1",
      port: 8080,
      namespace: "shop",
      selector: { app: "checkout" },
    },
    payments: {
      image: "shop/payments:1",
      port: 9090,
      namespace: "shop",
      selector: { app: "payments" },
    },
  };
  new k8s.core.v1.Namespace("shop-namespace", { metadata: { name: "shop" } });
  const gateway = new EnvoyGateway("gw", {
    adsHost: runtime.xdsHost,
    adsPort: runtime.xdsPort,
    routedPorts: routedPorts(shop),
  });
  const routing = new BaselineRouting("br", {
    services: shop,
    gatewayNamespace: "shardworks-gateway",
  });
  const routedShard = new DevShard("shard-carol", {
    shardName: "carol",
    owner: "carol",
    forks: { checkout: { image: "shop/checkout:carol-1" } },
    baseline: shop,
    gatewayNamespace: "shardworks-gateway",
    ttlSeconds: 3600,
  });
  const shard = new DevShard(
    "shard-alice",
    aliceShard({
      owner: "alice",
      forks: { checkout: { image: "ghcr.io/acme/checkout:alice", env: { A: "1" } } },
    }),
  );
  // A quota below the LimitRange's 500m/512Mi defaults: the defaults must follow the quota, or
  // the API server refuses the LimitRange ("default value ... is greater than max value").
  const tiny = new DevShard("shard-tiny", {
    shardName: "tiny",
    owner: "tiny",
    forks: { checkout: {} },
    baseline: checkoutBaseline(),
    gatewayNamespace: "shardworks-gateway",
    ttlSeconds: 3600,
    quota: { cpu: "250m", memory: "64Mi", pods: 2 },
  });
  const grant = new JitGrant("jit-carol", {
    subject: { kind: "User", name: "carol" },
    clusterRole: ClusterRoleName.ShardViewer,
    namespace: "shard-alice",
    expiresAt: new Date(now.getTime() + 3_600_000).toISOString(),
  });
  const clusterGrant = new JitGrant("jit-oncall", {
    subject: { kind: "Group", name: "oncall" },
    clusterRole: ClusterRoleName.PlatformAdmin,
    expiresAt: new Date(now.getTime() + 3_600_000).toISOString(),
  });
  await settled(
    access.clusterRoleNames,
    runtime.schedulerUrl,
    gateway.address,
    routing.routed,
    routedShard.forkDestinations,
    shard.forkDestinations,
    tiny.forkDestinations,
    grant.expiresAt,
    clusterGrant.expiresAt,
  );
  const rank = (kind: string) => (kind === "Namespace" ? 0 : kind.startsWith("Cluster") ? 1 : 2);
  return recorded
    .filter((r) => isKubernetesObject(r.type))
    .map((r) => {
      const object = structuredClone(r.inputs);
      // Pulumi auto-names objects without a name: `<resource name>-<random suffix>`.
      object["metadata"] ??= {};
      object["metadata"].name ??= `${r.name}-${Math.random().toString(16).slice(2, 9)}`;
      return { name: r.name, object };
    })
    .sort((a, b) => rank(String(a.object["kind"])) - rank(String(b.object["kind"])));
}

if (!existsSync(kubeApiserverBinary)) {
  const message =
    `\n!!! ${kubeApiserverBinary} is missing (\`npm run tools\` builds it).\n` +
    "!!! UNVERIFIED: that a real API server accepts the components' objects with strict field\n" +
    "!!! validation, RBAC and Pod Security admission. Only the OpenAPI model check ran.\n";
  console.warn(message);
  test("components' objects against the OpenAPI schema (kube-apiserver missing: see warning)", async (t) => {
    t.log(message);
    const objects = await emittedObjects();
    t.true(objects.length > 30);
    for (const { name, object } of objects) t.deepEqual(kubernetesSchemaProblems(object), [], name);
  });
} else {
  test("a real kube-apiserver accepts every emitted object under strict field validation", async (t) => {
    // A throwaway testbed cluster (scripts/cluster.ts); no controller manager: nothing is deleted.
    const name = `components-${randomBytes(4).toString("hex")}`;
    t.teardown(() => stopCluster(name, { purge: true, log: () => undefined }));
    const cluster = await startCluster(name, {
      controllerManager: false,
      users: [],
      log: (line) => t.log(line),
    });
    const apiserver = {
      call: (method: string, path: string, body?: unknown) =>
        clusterRequest(cluster, method, path, body),
    };
    const objects = await emittedObjects();
    t.true(objects.length > 30);

    // The check is live: strict validation rejects an unknown field.
    const bogus = {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "bogus", namespace: "default" },
      dataa: { a: "b" },
    };
    const rejected = await apiserver.call(
      "POST",
      "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
      bogus,
    );
    t.is(rejected.status, 400);
    t.regex(String(rejected.body["message"]), /strict decoding error: unknown field "dataa"/);

    const failures: string[] = [];
    const warnings: string[] = [];
    for (const { name, object } of objects) {
      const response = await apiserver.call(
        "POST",
        `${collectionPath(object)}?fieldValidation=Strict`,
        object,
      );
      if (response.status !== 201)
        failures.push(`${name}: ${response.status} ${String(response.body["message"])}`);
      for (const w of response.warnings) warnings.push(`${name}: ${w}`);
    }
    t.deepEqual(failures, []);
    // Pod Security: the gateway (restricted) and shard (baseline) namespaces warn on violations.
    t.deepEqual(warnings, []);

    // What was created is what was sent: spot-check the privileged DaemonSet and a shard quota.
    const ds = await apiserver.call(
      "GET",
      "/apis/apps/v1/namespaces/shardworks-system/daemonsets/shardworks-node-agent",
    );
    t.is(ds.status, 200);
    const podSpec = (ds.body["spec"] as any).template.spec;
    t.deepEqual(podSpec.nodeSelector, { "shardworks.dev/microvm": "true" });
    t.true(podSpec.containers[0].securityContext.privileged);
    const quota = await apiserver.call(
      "GET",
      "/api/v1/namespaces/shard-alice/resourcequotas/shard-quota",
    );
    t.is(quota.status, 200);
    // Shard owners cannot open node ports or cloud load balancers around the gateway.
    t.like((quota.body["spec"] as any).hard, {
      "services.loadbalancers": "0",
      "services.nodeports": "0",
    });
    const tinyLimits = await apiserver.call(
      "GET",
      "/api/v1/namespaces/shard-tiny/limitranges/shard-limits",
    );
    t.is(tinyLimits.status, 200);
    t.deepEqual((tinyLimits.body["spec"] as any).limits[0].default, {
      cpu: "250m",
      memory: "64Mi",
    });
    // Routing between services: the name is the gateway's, the pods are behind <name>-baseline.
    const checkoutName = await apiserver.call("GET", "/api/v1/namespaces/shop/services/checkout");
    t.is(checkoutName.status, 200);
    t.like(checkoutName.body["spec"], {
      type: "ExternalName",
      externalName: "envoy.shardworks-gateway.svc.cluster.local",
    });
    const checkoutPods = await apiserver.call(
      "GET",
      "/api/v1/namespaces/shop/services/checkout-baseline",
    );
    t.is(checkoutPods.status, 200);
    t.deepEqual((checkoutPods.body["spec"] as any).selector, { app: "checkout" });
    t.truthy((checkoutPods.body["spec"] as any).clusterIP, "a ClusterIP Service of its own");
    const inShard = await apiserver.call("GET", "/api/v1/namespaces/shard-carol/services/payments");
    t.is((inShard.body["spec"] as any).type, "ExternalName");
    const gatewayService = await apiserver.call(
      "GET",
      "/api/v1/namespaces/shardworks-gateway/services/envoy",
    );
    t.deepEqual(
      ((gatewayService.body["spec"] as any).ports as { port: number; targetPort: number }[]).map(
        (p) => `${p.port}->${p.targetPort}`,
      ),
      ["80->8080", "8080->8080", "9090->8080"],
    );
  });
}
