/* eslint-disable @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-return --
   Recorded resource inputs are untyped JSON; tests read into them freely. */
/**
 * Routing between services (ADR 0012): what the platform creates so that a baseline service's
 * name resolves to the gateway, what the routing controller is told, and what Envoy gets.
 */
import test from "ava";
import {
  BaselineRouting,
  DevShard,
  EnvoyGateway,
  RuntimeDeployment,
  SKIP_AWAIT_ANNOTATION,
  routedPorts,
  validateBaselineRouting,
  validateRoutedPorts,
  type BaselineService,
} from "../../components";
import { routingConfigSchema, parseBaseline } from "../../runtime/routing/main";
import { translate } from "../../runtime/routing/translate";
import { TypeUrl, unpack } from "../../runtime/routing/xds";
import { named, ofType, recordBuild, recorded } from "./helpers/pulumi";
import { reasonOf, testObjectsMatchOpenApi } from "./helpers/component-tests";

/** The example shop as a platform's baseline: two services routed in the cluster, one not. */
const shop: Record<string, BaselineService> = {
  frontend: {
    image: "localhost:5055/shop/frontend:1",
    port: 8080,
    namespace: "shop",
    selector: { app: "frontend" },
  },
  checkout: {
    image: "localhost:5055/shop/checkout:1",
    port: 8080,
    namespace: "shop",
    selector: { app: "checkout" },
  },
  payments: {
    image: "localhost:5055/shop/payments:1",
    port: 9090,
    namespace: "shop",
    selector: { app: "payments", tier: "backend" },
  },
  // A service without a selector: routed at the edge only, its own Service stays the team's.
  legacy: { image: "ghcr.io/acme/legacy:1", port: 8080, namespace: "default" },
};

test.before(async () => {
  await recordBuild(() => ({
    routing: new BaselineRouting("br", { services: shop, gatewayNamespace: "shardworks-gateway" }),
    gateway: new EnvoyGateway("gw", {
      adsHost: "shardworks-routing.shardworks-system.svc.cluster.local",
      adsPort: 18000,
      routedPorts: routedPorts(shop),
    }),
    shard: new DevShard("sh", {
      shardName: "alice",
      owner: "alice",
      forks: { checkout: { image: "localhost:5055/shop/checkout:alice-1" } },
      baseline: shop,
      gatewayNamespace: "shardworks-gateway",
      ttlSeconds: 3600,
    }),
    runtime: new RuntimeDeployment("rt", {
      version: "0.1.0",
      imageRepository: "ghcr.io/shardworks/runtime",
      platformToken: "t".repeat(40),
      gatewayNamespace: "shardworks-gateway",
      baselineServices: shop,
    }),
  }));
});

const services = () =>
  ofType("kubernetes:core/v1:Service", "br").map((r) => ({
    name: r.inputs["metadata"].name,
    namespace: r.inputs["metadata"].namespace,
    spec: r.inputs["spec"],
    annotations: r.inputs["metadata"].annotations,
  }));

test("each routed service's name resolves to the gateway: an ExternalName Service in its namespace", (t) => {
  const byName = new Map(services().map((s) => [s.name, s]));
  for (const [name, s] of [
    ["frontend", 8080],
    ["checkout", 8080],
    ["payments", 9090],
  ] as const) {
    const service = byName.get(name);
    t.truthy(service, name);
    t.is(service?.namespace, "shop");
    t.is(service?.spec.type, "ExternalName");
    t.is(service?.spec.externalName, "envoy.shardworks-gateway.svc.cluster.local");
    t.deepEqual(service?.spec.selector, undefined, `${name} must not select pods`);
    t.is(service?.spec.ports[0].port, s);
  }
});

test("each routed service gets <name>-baseline selecting the app's pods on its port, not awaited", (t) => {
  const baseline = services().find((s) => s.name === "payments-baseline");
  t.is(baseline?.namespace, "shop");
  t.is(baseline?.spec.type, undefined);
  t.deepEqual(baseline?.spec.selector, { app: "payments", tier: "backend" });
  t.deepEqual(baseline?.spec.ports, [
    { name: "http", port: 9090, targetPort: 9090, protocol: "TCP" },
  ]);
  // The app is deployed by its team, possibly after the platform: `pulumi up` does not wait.
  t.is(baseline?.annotations[SKIP_AWAIT_ANNOTATION], "true");
});

test("a service without a selector is left alone: no Service of ours takes its name", (t) => {
  t.deepEqual(
    services()
      .map((s) => s.name)
      .sort(),
    [
      "checkout",
      "checkout-baseline",
      "frontend",
      "frontend-baseline",
      "payments",
      "payments-baseline",
    ],
  );
});

test("in a shard, each routed service it does not fork resolves to the gateway too, so short names work in forks", (t) => {
  const inShard = ofType("kubernetes:core/v1:Service", "sh").map((r) => ({
    name: r.inputs["metadata"].name,
    type: r.inputs["spec"].type,
    externalName: r.inputs["spec"].externalName,
  }));
  t.deepEqual(
    inShard.sort((a, b) => a.name.localeCompare(b.name)),
    [
      // The fork's own Service (what the shard registers as its destination).
      { name: "checkout", type: undefined, externalName: undefined },
      {
        name: "frontend",
        type: "ExternalName",
        externalName: "envoy.shardworks-gateway.svc.cluster.local",
      },
      {
        name: "payments",
        type: "ExternalName",
        externalName: "envoy.shardworks-gateway.svc.cluster.local",
      },
    ],
  );
  t.true(
    inShard.every((s) => s.name !== "legacy"),
    "an edge-only service gets no name here",
  );
});

test("the gateway Service exposes every routed port, each to the one HTTP listener", (t) => {
  const ports = named("gw-service").inputs["spec"].ports;
  t.deepEqual(ports, [
    { name: "http", port: 80, targetPort: 8080, protocol: "TCP" },
    { name: "http-8080", port: 8080, targetPort: 8080, protocol: "TCP" },
    { name: "http-9090", port: 9090, targetPort: 8080, protocol: "TCP" },
  ]);
});

/** The routing controller's baseline as the RuntimeDeployment hands it over, parsed as it does. */
function controllerBaseline() {
  const deployment = named("rt-routing");
  const container = deployment.inputs["spec"].template.spec.containers[0];
  const env = container.env.find(
    (e: { name: string }) => e.name === "SHARDWORKS_BASELINE_SERVICES",
  );
  return routingConfigSchema.parse({
    etcdEndpoints: ["http://127.0.0.1:2379"],
    baseline: parseBaseline(String(env.value)),
  }).baseline;
}

test("the routing controller's baseline goes to <name>-baseline (never the name, which is the gateway) and answers the in-cluster names", (t) => {
  const byName = new Map(controllerBaseline().map((b) => [b.name, b]));
  t.deepEqual(byName.get("checkout"), {
    name: "checkout",
    destination: "checkout-baseline.shop.svc.cluster.local:8080",
    hosts: ["checkout.shop", "checkout.shop.svc", "checkout.shop.svc.cluster.local"],
    protocol: "http1",
  });
  t.is(byName.get("payments")?.destination, "payments-baseline.shop.svc.cluster.local:9090");
  t.deepEqual(byName.get("legacy"), {
    name: "legacy",
    destination: "legacy.default.svc.cluster.local:8080",
    protocol: "http1",
  });
});

test("Envoy's virtual host of a routed service answers every name a caller in the cluster uses", (t) => {
  const resources = translate({ baseline: controllerBaseline(), shards: [], sandboxes: [] });
  const ingress = resources[TypeUrl.Route].find((r) => r.name === "ingress/base");
  t.truthy(ingress);
  const config = unpack(ingress!.any) as {
    virtual_hosts: { name: string; domains: string[] }[];
  };
  const checkout = config.virtual_hosts.find((v) => v.name === "checkout");
  t.deepEqual(checkout?.domains, [
    "checkout",
    "checkout.shardworks.local",
    "checkout.shop",
    "checkout.shop.svc",
    "checkout.shop.svc.cluster.local",
  ]);
  // Envoy refuses a route table with a domain twice (and with it every route): none is.
  const domains = config.virtual_hosts.flatMap((v) => v.domains);
  t.is(new Set(domains).size, domains.length);
});

test("the routing controller refuses a host name given to two services", (t) => {
  const result = routingConfigSchema.safeParse({
    etcdEndpoints: ["http://127.0.0.1:2379"],
    baseline: [
      { name: "checkout", destination: "checkout-baseline.shop.svc:8080", hosts: ["shop-api"] },
      { name: "payments", destination: "payments-baseline.shop.svc:8080", hosts: ["shop-api"] },
    ],
  });
  t.false(result.success);
  t.is(
    result.error?.issues[0]?.message,
    '"shop-api" is already a host of service "checkout"; each host name routes to one service',
  );
  t.deepEqual(result.error?.issues[0]?.path, ["baseline", 1, "hosts", 0]);
});

test("validation names the service and the fix", (t) => {
  const routed = (name: string, s: Partial<BaselineService>): Record<string, BaselineService> => ({
    [name]: { image: "i:1", port: 8080, namespace: "shop", selector: { app: name }, ...s },
  });
  const long = "x".repeat(55);
  t.is(
    reasonOf(() => validateBaselineRouting(routed(long, {}), "shardworks-gateway")),
    `baseline.${long}.selector: service "${long}" is routed between services, so "${long}-baseline" must be a DNS label; use a name of at most 54 characters, or drop the selector`,
  );
  t.is(
    reasonOf(() =>
      validateBaselineRouting(
        { ...routed("api", {}), "api-baseline": { image: "i:1", port: 80, namespace: "shop" } },
        "shardworks-gateway",
      ),
    ),
    'baseline.api.selector: Service "api-baseline" in namespace "shop" would select "api"\'s pods, but "api-baseline" is a baseline service of that name; rename one of them',
  );
  for (const [namespace, whose] of [
    ["shardworks-gateway", "the gateway's"],
    ["shardworks-system", "the runtime's"],
    ["shard-alice", "a shard's"],
    ["kube-system", "a Kubernetes system"],
  ] as const) {
    t.is(
      reasonOf(() => validateBaselineRouting(routed("api", { namespace }), "shardworks-gateway")),
      `baseline.api.namespace: "${namespace}" is ${whose} namespace; run service "api" in the app's own namespace`,
    );
  }
  t.is(
    reasonOf(() => validateBaselineRouting(routed("api", { selector: {} }), "shardworks-gateway")),
    'baseline.api.selector: is empty: give the labels of "api"\'s pods, e.g. {app: api}, or leave it out to route "api" at the edge only',
  );
  t.is(
    reasonOf(() => validateBaselineRouting(shop, "shardworks-gateway")),
    "no error",
  );
  t.is(
    reasonOf(() => validateRoutedPorts([8080, 8080])),
    "routedPorts[1]: 8080 is listed twice",
  );
  t.is(
    reasonOf(() => validateRoutedPorts([0])),
    "routedPorts[0]: 0 is not a port (1-65535)",
  );
});

test("a bad BaselineRouting fails before any child is registered", (t) => {
  const before = recorded.length;
  t.throws(
    () =>
      new BaselineRouting("bad", {
        services: { api: { image: "i:1", port: 80, namespace: "shard-bob", selector: { a: "b" } } },
        gatewayNamespace: "shardworks-gateway",
      }),
    { message: /shard's namespace/ },
  );
  t.false(recorded.slice(before).some((r) => r.name.startsWith("bad-")));
});

testObjectsMatchOpenApi({ atLeast: 20 });
