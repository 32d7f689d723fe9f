/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument --
   Recorded resource inputs are untyped JSON; tests read into them freely. */
import test from "ava";
import * as pulumi from "@pulumi/pulumi";
import {
  EnvoyGateway,
  GATEWAY_NODE_ID,
  SKIP_AWAIT_ANNOTATION,
  validateGatewayAdminHost,
  validateGatewayPorts,
  validateGatewayReplicas,
} from "../../components";
import { envoyBootstrap } from "../../contract/envoy-bootstrap";
import { podSpecOf } from "./helpers/k8s-schema";
import { named, recordBuild, recorded, unwrap } from "./helpers/pulumi";
import { reasonOf, testObjectsMatchOpenApi } from "./helpers/component-tests";

let gateway: EnvoyGateway;
let local: EnvoyGateway;

test.before(async () => {
  ({ gateway, local } = await recordBuild(() => ({
    gateway: new EnvoyGateway("gw", {
      adsHost: pulumi.output("shardworks-routing.shardworks-system.svc.cluster.local"),
      adsPort: 18000,
      replicas: 3,
      maxReplicas: 12,
    }),
    local: new EnvoyGateway("gw-local", {
      namespace: "edge",
      adsHost: "routing",
      adsPort: 18000,
      serviceType: "ClusterIP",
      internal: true,
      skipAwait: true,
    }),
  })));
});

test("children are gw-<role>, parented to the gateway, in its namespace", (t) => {
  const children = recorded.filter((r) => r.parent === "gw");
  t.deepEqual(children.map((c) => c.name).sort(), [
    "gw-bootstrap",
    "gw-envoy",
    "gw-hpa",
    "gw-namespace",
    "gw-pdb",
    "gw-service",
  ]);
  for (const c of children.filter((c) => c.name !== "gw-namespace")) {
    t.is(c.inputs["metadata"].namespace, "shardworks-gateway", c.name);
  }
  t.is(named("gw-namespace").inputs["metadata"].name, "shardworks-gateway");
  t.is(named("gw-local-namespace").inputs["metadata"].name, "edge");
});

test("the bootstrap ConfigMap holds the ADS-only bootstrap pointed at the routing controller", (t) => {
  const bootstrap = JSON.parse(named("gw-bootstrap").inputs["data"]["envoy.json"]);
  t.deepEqual(
    bootstrap,
    envoyBootstrap({
      nodeId: GATEWAY_NODE_ID,
      cluster: GATEWAY_NODE_ID,
      adsHost: "shardworks-routing.shardworks-system.svc.cluster.local",
      adsPort: 18000,
      adminPort: 9901,
    }),
  );
  t.deepEqual(Object.keys(bootstrap.dynamic_resources).sort(), [
    "ads_config",
    "cds_config",
    "lds_config",
  ]);
  t.deepEqual(
    bootstrap.static_resources.clusters.map((c: { name: string }) => c.name),
    ["xds_cluster"],
  );
  t.is(bootstrap.admin.address.socket_address.address, "127.0.0.1");
});

test("envoyBootstrap: delta ADS over gRPC to a static http2 xds_cluster, CDS and LDS from ADS", (t) => {
  const b = envoyBootstrap({
    nodeId: "n1",
    cluster: "c1",
    adsHost: "xds.example",
    adsPort: 18001,
    adminPort: 9000,
  }) as any;
  t.deepEqual(b.node, { id: "n1", cluster: "c1" });
  t.deepEqual(
    b.dynamic_resources.ads_config.grpc_services.map(
      (g: { envoy_grpc: { cluster_name: string } }) => g.envoy_grpc.cluster_name,
    ),
    ["xds_cluster"],
  );
  t.is(b.dynamic_resources.ads_config.api_type, "DELTA_GRPC");
  t.is(b.dynamic_resources.ads_config.transport_api_version, "V3");
  t.deepEqual(b.dynamic_resources.cds_config, { ads: {}, resource_api_version: "V3" });
  t.deepEqual(b.dynamic_resources.lds_config, { ads: {}, resource_api_version: "V3" });
  const xds = b.static_resources.clusters[0];
  t.deepEqual(
    xds.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
      .explicit_http_config,
    { http2_protocol_options: { connection_keepalive: { interval: "10s", timeout: "5s" } } },
  );
  t.deepEqual(xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address, {
    address: "xds.example",
    port_value: 18001,
  });
  t.deepEqual(b.admin.address.socket_address, { address: "127.0.0.1", port_value: 9000 });
});

test("Envoy runs unprivileged from the bootstrap, with probes on the listener", (t) => {
  const pod = podSpecOf(named("gw-envoy").inputs)!;
  const envoy = pod.containers[0];
  t.deepEqual(envoy.args.slice(0, 2), ["-c", "/etc/envoy/envoy.json"]);
  t.deepEqual(pod.volumes, [{ name: "bootstrap", configMap: { name: "envoy-bootstrap" } }]);
  t.is(envoy.readinessProbe.tcpSocket.port, 8080);
  t.false(envoy.securityContext.privileged);
  t.is(
    envoy.ports.some((p: { containerPort: number }) => p.containerPort === 9901),
    false,
    "admin is not exposed",
  );
  // The HPA owns the replica count: the Deployment leaves it unset so `up` does not reset it.
  t.false("replicas" in named("gw-envoy").inputs["spec"]);
});

test("the Service is an NLB LoadBalancer; internal when asked", (t) => {
  const svc = named("gw-service").inputs;
  t.is(svc["spec"].type, "LoadBalancer");
  t.deepEqual(svc["spec"].ports, [{ name: "http", port: 80, targetPort: 8080, protocol: "TCP" }]);
  const annotations = svc["metadata"].annotations;
  t.is(annotations["service.beta.kubernetes.io/aws-load-balancer-type"], "external");
  t.is(annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"], "internet-facing");
  const localSvc = named("gw-local-service").inputs;
  t.is(localSvc["spec"].type, "ClusterIP");
  t.is(
    localSvc["metadata"].annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"],
    "internal",
  );
});

test("a PDB and an HPA keep and scale the Deployment", (t) => {
  t.is(named("gw-pdb").inputs["spec"].maxUnavailable, 1);
  const hpa = named("gw-hpa").inputs["spec"];
  t.deepEqual(hpa.scaleTargetRef, { apiVersion: "apps/v1", kind: "Deployment", name: "envoy" });
  t.is(hpa.minReplicas, 3);
  t.is(hpa.maxReplicas, 12);
});

test("address: the in-cluster name until a load balancer reports one", async (t) => {
  t.is(await unwrap(local.address), "envoy.edge.svc.cluster.local:80");
  t.is(await unwrap(gateway.namespace), "shardworks-gateway");
});

test("skipAwait annotates the workloads only when asked", (t) => {
  for (const name of ["gw-local-envoy", "gw-local-service", "gw-local-hpa", "gw-local-pdb"]) {
    t.is(named(name).inputs["metadata"].annotations[SKIP_AWAIT_ANNOTATION], "true", name);
  }
  t.is(named("gw-envoy").inputs["metadata"].annotations[SKIP_AWAIT_ANNOTATION], undefined);
});

testObjectsMatchOpenApi({ exactly: 12 });

const bad: [string, () => unknown, string][] = [
  [
    "no replicas",
    () => validateGatewayReplicas(0, 10),
    "replicas: 0 must be a whole number of at least 1",
  ],
  [
    "max below min",
    () => validateGatewayReplicas(3, 2),
    "maxReplicas: 2 must be at least replicas (3)",
  ],
  [
    "same ports",
    () => validateGatewayPorts(8080, 8080),
    "adminPort: 8080 is also the listenerPort; use another port",
  ],
  [
    "port out of range",
    () => validateGatewayPorts(0, 9901),
    "listenerPort: 0 is not a port (1-65535)",
  ],
  [
    "an admin host name",
    () => validateGatewayAdminHost("localhost"),
    'adminHost: "localhost" must be an IP address, e.g. "127.0.0.1" (admin) or "0.0.0.0" (listener)',
  ],
];
for (const [title, fn, expected] of bad) {
  test(`validator rejects: ${title}`, (t) => t.is(reasonOf(fn), expected));
}
test("validators accept good values", (t) => {
  t.is(
    reasonOf(() => validateGatewayReplicas(1, 1)),
    "no error",
  );
  t.is(
    reasonOf(() => validateGatewayPorts(8080, 9901)),
    "no error",
  );
  t.is(
    reasonOf(() => validateGatewayAdminHost("0.0.0.0")),
    "no error",
  );
});
