import test from "ava";
import fc from "fast-check";
import { RE2 } from "re2-wasm";
import type { SandboxRecord, ShardRecord } from "../../../contract/model";
import {
  baggageRegex,
  DEFAULT_ROUTE_BUCKETS,
  routeBucket,
  routingKeyFromBaggage,
  forNode,
  translate,
  Translator,
  type RoutingState,
} from "../../../runtime/routing/translate";
import { routingConfigSchema } from "../../../runtime/routing/main";
import {
  pack,
  Snapshot,
  TypeUrl,
  unpack,
  type AnyMessage,
  type XdsResource,
} from "../../../runtime/routing/xds";

/**
 * The gateway's route configuration that requests see (ADR 0016), decoded: scope `base` without
 * a key, `sandbox` for sandbox hosts, else the key's bucket.
 */
function gatewayScope<T>(
  routes: ReadonlyMap<string, XdsResource>,
  scope: { key: string } | "base" | "sandbox",
): T {
  const name =
    typeof scope === "string" ? scope : `b${routeBucket(scope.key, DEFAULT_ROUTE_BUCKETS)}`;
  return unpack(routes.get(`ingress/${name}`)!.any) as T;
}

const now = "2026-01-01T00:00:00.000Z";
function shard(name: string, routingKey: string, forks: Record<string, string>): ShardRecord {
  return {
    name,
    routingKey,
    owner: `${name}@example.com`,
    forks,
    ttlSeconds: 60,
    expiresAt: now,
    tokenHash: "a".repeat(64),
    createdAt: now,
  };
}
const sandbox: SandboxRecord = {
  id: "sb1",
  spec: {
    image: "x",
    command: ["x"],
    env: {},
    resources: { cpuMillis: 100, memoryMiB: 64 },
    nodeSelector: {},
    tolerations: [],
    ports: [8080, 9090],
    network: false,
  },
  status: {
    phase: "running",
    endpoints: { "8080": "127.0.0.1:31000", "9090": "127.0.0.1:31001" },
    updatedAt: now,
  },
  createdAt: now,
};
const state: RoutingState = {
  baseline: [
    { name: "api", destination: "127.0.0.1:5000" },
    { name: "web", destination: "web.default.svc:80" },
  ],
  shards: [
    shard("alice", "alice-key", { api: "127.0.0.1:6000", web: "web.shard-alice.svc:80" }),
    shard("bob", "bob-key", { api: "127.0.0.1:6001", gone: "127.0.0.1:1" }),
  ],
  sandboxes: [sandbox],
};

interface VirtualHost {
  name: string;
  domains: string[];
  routes: {
    name: string;
    match: { headers?: { name: string; string_match: Record<string, unknown> }[] };
    route: { cluster: string };
  }[];
}

test("every resource decodes with Envoy's protos into its type and the snapshot is consistent", (t) => {
  const snapshot = new Snapshot(translate(state));
  t.deepEqual(snapshot.inconsistencies(), []);
  for (const typeUrl of Object.values(TypeUrl)) {
    t.true(snapshot.resources(typeUrl).size > 0, typeUrl);
    for (const [name, resource] of snapshot.resources(typeUrl)) {
      t.is(resource.any.type_url, typeUrl);
      const decoded = unpack(resource.any);
      t.is(decoded[typeUrl === TypeUrl.Endpoint ? "cluster_name" : "name"], name);
    }
  }
  t.deepEqual([...snapshot.resources(TypeUrl.Cluster).keys()].sort(), [
    "baseline/api",
    "baseline/web",
    "gateway/forks/http1",
    "gateway/forks/http2",
    "gateway/shard/alice/web",
    "sandbox/sb1/8080",
    "sandbox/sb1/9090",
    "shard/alice/api",
    "shard/alice/web",
    "shard/bob/api",
  ]);
  // DNS destinations are LOGICAL_DNS (resolved by the client), IPs are EDS with an assignment.
  t.is(unpack(snapshot.resources(TypeUrl.Cluster).get("shard/alice/web")!.any).type, "LOGICAL_DNS");
  t.is(unpack(snapshot.resources(TypeUrl.Cluster).get("shard/alice/api")!.any).type, "EDS");
});

test("one virtual host per service: every header route, then every baggage route, then the baseline", (t) => {
  const snapshot = new Snapshot(translate(state));
  const api = unpack(snapshot.resources(TypeUrl.Route).get("api")!.any) as {
    virtual_hosts: VirtualHost[];
  };
  t.is(api.virtual_hosts.length, 1);
  const routes = api.virtual_hosts[0]!.routes;
  t.deepEqual(
    routes.map((r) => [r.name, r.route.cluster]),
    [
      ["alice/api/header", "shard/alice/api"],
      ["bob/api/header", "shard/bob/api"],
      ["alice/api/baggage", "shard/alice/api"],
      ["bob/api/baggage", "shard/bob/api"],
      ["api/baseline", "baseline/api"],
    ],
  );
  t.deepEqual(routes[0]!.match.headers, [
    {
      name: "x-shardworks-routing-key",
      header_match_specifier: "string_match",
      string_match: { exact: "alice-key", match_pattern: "exact" },
    },
  ]);
  const gatewayRoutes = snapshot.resources(TypeUrl.Route);
  const base = gatewayScope<{ virtual_hosts: VirtualHost[] }>(gatewayRoutes, "base");
  t.deepEqual(
    base.virtual_hosts.map((v) => [v.name, v.domains]),
    [
      ["api", ["api", "api.shardworks.local"]],
      ["web", ["web", "web.shardworks.local"]],
    ],
  );
  const sandboxes = gatewayScope<{ virtual_hosts: VirtualHost[] }>(gatewayRoutes, "sandbox");
  t.deepEqual(
    sandboxes.virtual_hosts.map((v) => [v.name, v.domains]),
    [
      ["sandbox/sb1/8080", ["8080.sb1.sandbox.shardworks.local", "sb1.sandbox.shardworks.local"]],
      ["sandbox/sb1/9090", ["9090.sb1.sandbox.shardworks.local"]],
    ],
  );
  const listener = unpack(snapshot.resources(TypeUrl.Listener).get("api")!.any) as {
    api_listener: { api_listener: { type_url: string; value: Uint8Array } };
  };
  const hcm = unpack(listener.api_listener.api_listener) as { rds: { route_config_name: string } };
  t.is(hcm.rds.route_config_name, "api");
});

test("route configurations assembled from memoized encodings are byte-identical to a full encode", (t) => {
  const resources = translate(state);
  // api, web, sandbox/sb1; the gateway's base, sandbox and one per bucket.
  t.is(resources[TypeUrl.Route].length, 3 + 2 + DEFAULT_ROUTE_BUCKETS);
  for (const route of resources[TypeUrl.Route]) {
    const full = pack(TypeUrl.Route, route.message);
    t.true(Buffer.from(full.value).equals(Buffer.from(route.any.value)), route.name);
  }
});

test("changing one shard rebuilds only that shard's resources and its services' routes", (t) => {
  const translator = new Translator();
  const first = translator.translate(state);
  const carol = shard("carol", "carol-key", { web: "127.0.0.1:7000" });
  const second = translator.translate({ ...state, shards: [...state.shards, carol] });
  const byName = (r: typeof first, type: TypeUrl) => new Map(r[type].map((x) => [x.name, x]));
  const [c1, c2] = [byName(first, TypeUrl.Cluster), byName(second, TypeUrl.Cluster)];
  t.is(c2.get("shard/alice/api"), c1.get("shard/alice/api"), "unchanged shard reused");
  t.truthy(c2.get("shard/carol/web"));
  const [r1, r2] = [byName(first, TypeUrl.Route), byName(second, TypeUrl.Route)];
  t.is(r2.get("api"), r1.get("api"), "service carol does not fork is reused");
  t.not(r2.get("web"), r1.get("web"));
  // The memoized result equals translation from scratch.
  const fresh = translate({ ...state, shards: [...state.shards, carol] });
  for (const type of Object.values(TypeUrl)) {
    t.deepEqual(
      second[type].map((r) => [r.name, r.hash]),
      fresh[type].map((r) => [r.name, r.hash]),
    );
  }
  t.is(new Snapshot(second).version(TypeUrl.Cluster), new Snapshot(fresh).version(TypeUrl.Cluster));
});

test("the same state gives the same versions; a change to routes leaves cluster versions alone", (t) => {
  const a = new Snapshot(translate(state));
  const b = new Snapshot(translate({ ...state, shards: [...state.shards].reverse() }));
  for (const type of Object.values(TypeUrl)) t.is(a.version(type), b.version(type));
  const rekeyed = state.shards.map((s) =>
    s.name === "alice" ? { ...s, routingKey: "alice-two" } : s,
  );
  const c = new Snapshot(translate({ ...state, shards: rekeyed }));
  t.is(c.version(TypeUrl.Cluster), a.version(TypeUrl.Cluster));
  t.not(c.version(TypeUrl.Route), a.version(TypeUrl.Route));
});

test("consistent() reports a route to a missing cluster and an EDS cluster without endpoints", (t) => {
  const resources = translate(state);
  const broken = new Snapshot({
    ...resources,
    [TypeUrl.Cluster]: resources[TypeUrl.Cluster].filter((c) => c.name !== "shard/bob/api"),
    [TypeUrl.Endpoint]: resources[TypeUrl.Endpoint].filter((c) => c.name !== "baseline/api"),
  });
  const problems = broken.inconsistencies();
  t.false(broken.consistent());
  t.true(problems.some((p) => p.includes("cluster shard/bob/api does not exist")));
  t.true(problems.some((p) => p.includes("EDS cluster baseline/api has no ClusterLoadAssignment")));
});

/** A small deterministic PRNG so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

test("the baggage regex (RE2, as Envoy and gRPC run it) agrees with @opentelemetry/core", (t) => {
  const key = "alice-key";
  const re = new RE2(`^${baggageRegex(key)}$`, "u");
  const random = rng(42);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const ows = () => pick(["", "", " ", "  ", "\t", " \t"]);
  const otherKeys = [
    "userid",
    "a",
    "shardworks-routing-key2",
    "xshardworks-routing-key",
    "shardworks-routing",
    "sw",
  ];
  const values = [key, "alice-key2", "alice-ke", "bob-key", "x", "alice-key.x", "1"];
  const properties = ["", "", ";p=1", ";flag", "; p = 2;q", ";shardworks-routing-key=alice-key"];
  let matched = 0;
  for (let i = 0; i < 3000; i++) {
    const members: string[] = [];
    const count = 1 + Math.floor(random() * 6);
    const ours = random() < 0.7 ? Math.floor(random() * count) : -1;
    for (let m = 0; m < count; m++) {
      const k = m === ours ? "shardworks-routing-key" : pick(otherKeys);
      members.push(`${ows()}${k}${ows()}=${ows()}${pick(values)}${ows()}${pick(properties)}`);
    }
    const header = members.join(",");
    const expected = routingKeyFromBaggage(header) === key;
    if (expected) matched++;
    t.is(re.test(header), expected, header);
  }
  t.true(matched > 200, `enough positive cases (${matched})`);
});

test("a routing key with regex metacharacters cannot widen the pattern", (t) => {
  // The API refuses such keys; the pattern escapes them anyway.
  const re = new RE2(`^${baggageRegex("a.*")}$`, "u");
  t.false(re.test("shardworks-routing-key=abc"));
  t.true(re.test("shardworks-routing-key=a.*"));
});

/** Which cluster a request reaches: Envoy's and gRPC's rule, the first route whose headers match. */
function routeFor(
  routes: VirtualHost["routes"],
  headers: Record<string, string>,
): string | undefined {
  type Matcher = {
    name: string;
    string_match?: { exact?: string; safe_regex?: { regex: string } };
  };
  const matches = (m: Matcher): boolean => {
    const value = headers[m.name];
    if (value === undefined) return false;
    if (m.string_match?.exact !== undefined) return value === m.string_match.exact;
    return new RE2(`^(?:${m.string_match!.safe_regex!.regex})$`, "u").test(value);
  };
  const route = routes.find((r) =>
    ((r.match.headers ?? []) as unknown as Matcher[]).every(matches),
  );
  return route?.route.cluster;
}

test("an explicit routing-key header wins over a baggage member naming another shard", (t) => {
  const snapshot = new Snapshot(translate(state));
  const api = unpack(snapshot.resources(TypeUrl.Route).get("api")!.any) as {
    virtual_hosts: VirtualHost[];
  };
  const routes = api.virtual_hosts[0]!.routes;
  t.is(
    routeFor(routes, {
      "x-shardworks-routing-key": "bob-key",
      baggage: "shardworks-routing-key=alice-key",
    }),
    "shard/bob/api",
  );
  t.is(routeFor(routes, { baggage: "a=1, shardworks-routing-key=alice-key" }), "shard/alice/api");
  t.is(routeFor(routes, {}), "baseline/api");
});

test("shards past expiresAt get no resources when translation is given now", (t) => {
  const later = (iso: string) => new Date(Date.parse(iso) + 60_000).toISOString();
  const shards = [
    { ...shard("alice", "alice-key", { api: "127.0.0.1:6000" }), expiresAt: later(now) },
    shard("bob", "bob-key", { api: "127.0.0.1:6001" }),
  ];
  const snapshot = new Snapshot(
    translate({ ...state, shards, now: new Date(Date.parse(now) + 1) }),
  );
  const clusters = [...snapshot.resources(TypeUrl.Cluster).keys()].filter((n) =>
    n.startsWith("shard/"),
  );
  t.deepEqual(clusters, ["shard/alice/api"], "bob expired at `now`, alice lives a minute more");
  t.true(snapshot.consistent());
});

test("a baseline service named like a reserved resource (ingress) is refused", (t) => {
  const config = routingConfigSchema.safeParse({
    etcdEndpoints: ["http://127.0.0.1:2379"],
    baseline: [{ name: "ingress", destination: "10.0.0.1:80" }],
  });
  t.false(config.success);
  t.deepEqual(config.error!.issues[0]!.path, ["baseline", 0, "name"]);
  t.regex(config.error!.issues[0]!.message, /"ingress" is reserved/);
  t.throws(
    () => translate({ ...state, baseline: [{ name: "ingress", destination: "10.0.0.1:80" }] }),
    { message: /"ingress" is reserved/ },
  );
});

test("the gateway gets the ingress listener and no api_listeners; gRPC clients the reverse", (t) => {
  const resources = translate(state);
  const gateway = new Snapshot(forNode(resources, "gateway"));
  const grpc = new Snapshot(forNode(resources, "grpc"));
  t.deepEqual([...gateway.resources(TypeUrl.Listener).keys()], ["ingress"]);
  const scopes = [
    "ingress/base",
    "ingress/sandbox",
    ...Array.from({ length: DEFAULT_ROUTE_BUCKETS }, (_, i) => `ingress/b${i}`),
  ];
  t.deepEqual([...gateway.resources(TypeUrl.Route).keys()], scopes);
  t.deepEqual([...gateway.resources(TypeUrl.ScopedRoute).keys()], scopes);
  t.is(grpc.resources(TypeUrl.ScopedRoute).size, 0);
  for (const l of gateway.resources(TypeUrl.Listener).values()) {
    t.false("api_listener" in (unpack(l.any) as object), "Envoy refuses api_listeners in LDS");
  }
  t.false(grpc.resources(TypeUrl.Listener).has("ingress"));
  t.false([...grpc.resources(TypeUrl.Route).keys()].some((n) => n.startsWith("ingress")));
  t.true(grpc.resources(TypeUrl.Listener).has("api"));
  for (const l of grpc.resources(TypeUrl.Listener).values()) {
    t.true("api_listener" in (unpack(l.any) as object));
  }
  t.true(gateway.consistent());
  t.true(grpc.consistent());
  // The gateway: shared ORIGINAL_DST clusters for IP forks, its own cluster per DNS fork; gRPC
  // clients (no ORIGINAL_DST) keep a cluster per fork.
  t.deepEqual([...gateway.resources(TypeUrl.Cluster).keys()].sort(), [
    "baseline/api",
    "baseline/web",
    "gateway/forks/http1",
    "gateway/forks/http2",
    "gateway/shard/alice/web",
    "sandbox/sb1/8080",
    "sandbox/sb1/9090",
  ]);
  t.deepEqual([...grpc.resources(TypeUrl.Cluster).keys()].sort(), [
    "baseline/api",
    "baseline/web",
    "sandbox/sb1/8080",
    "sandbox/sb1/9090",
    "shard/alice/api",
    "shard/alice/web",
    "shard/bob/api",
  ]);
});

interface GatewayVirtualHost {
  name: string;
  routes?: { route: { cluster: string } }[];
  matcher?: {
    matcher_tree: {
      input: { typed_config: AnyMessage };
      exact_match_map: { map: Record<string, { action: { typed_config: AnyMessage } }> };
    };
    on_no_match: { action: { typed_config: AnyMessage } };
  };
}
interface DecodedRoute {
  route: { cluster: string; timeout?: { seconds: string } };
  request_headers_to_add?: { header: { key: string; value: string } }[];
}

test("the gateway looks the routing key up by exact match: one map entry per fork, the baseline on no match", (t) => {
  const gateway = new Snapshot(
    forNode(
      translate({
        ...state,
        baseline: [
          ...state.baseline,
          { name: "rpc", destination: "10.0.0.9:50051", protocol: "grpc" },
        ],
        shards: [...state.shards, shard("carol", "carol-key", { rpc: "10.0.0.10:50051" })],
      }),
      "gateway",
    ),
  );
  type Scope = { virtual_hosts: GatewayVirtualHost[] };
  const routes = gateway.resources(TypeUrl.Route);
  const ingress = gatewayScope<Scope>(routes, { key: "alice-key" });
  const api = ingress.virtual_hosts.find((v) => v.name === "api")!;
  t.is(api.routes, undefined, "no per-shard routes: one matcher");
  const input = unpack(api.matcher!.matcher_tree.input.typed_config);
  t.deepEqual(input, { header_name: "x-shardworks-routing-key" });
  const map = api.matcher!.matcher_tree.exact_match_map.map;
  // A bucket's matcher holds only the forks whose keys hash there.
  t.not(routeBucket("alice-key", 64), routeBucket("bob-key", 64), "the test needs two buckets");
  t.deepEqual(Object.keys(map), ["alice-key"]);
  const bobApi = gatewayScope<Scope>(routes, { key: "bob-key" }).virtual_hosts.find(
    (v) => v.name === "api",
  )!;
  t.deepEqual(Object.keys(bobApi.matcher!.matcher_tree.exact_match_map.map), ["bob-key"]);
  // Without a key: the baseline only.
  const baseApi = gatewayScope<Scope>(routes, "base").virtual_hosts.find((v) => v.name === "api")!;
  t.is(baseApi.matcher, undefined);
  t.deepEqual(
    baseApi.routes?.map((r) => r.route.cluster),
    ["baseline/api"],
  );
  const alice = unpack(map["alice-key"]!.action.typed_config) as unknown as DecodedRoute;
  t.is(alice.route.cluster, "gateway/forks/http1", "an IP fork: the shared ORIGINAL_DST cluster");
  t.deepEqual(alice.request_headers_to_add?.[0]?.header, {
    key: "x-shardworks-upstream",
    value: "127.0.0.1:6000",
  });
  const baseline = unpack(api.matcher!.on_no_match.action.typed_config) as unknown as DecodedRoute;
  t.is(baseline.route.cluster, "baseline/api");
  const web = ingress.virtual_hosts.find((v) => v.name === "web")!;
  const aliceWeb = unpack(
    web.matcher!.matcher_tree.exact_match_map.map["alice-key"]!.action.typed_config,
  ) as unknown as DecodedRoute;
  t.is(aliceWeb.route.cluster, "gateway/shard/alice/web", "a DNS fork: a cluster of its own");
  t.is(aliceWeb.request_headers_to_add, undefined);
  // A gRPC service: HTTP/2 upstream, no per-request timeout (streams).
  const rpc = gatewayScope<Scope>(routes, { key: "carol-key" }).virtual_hosts.find(
    (v) => v.name === "rpc",
  )!;
  const carol = unpack(
    rpc.matcher!.matcher_tree.exact_match_map.map["carol-key"]!.action.typed_config,
  ) as unknown as DecodedRoute;
  t.is(carol.route.cluster, "gateway/forks/http2");
  t.deepEqual(carol.route.timeout, {}, "timeout 0: none");
  const http2 = unpack(gateway.resources(TypeUrl.Cluster).get("baseline/rpc")!.any) as {
    typed_extension_protocol_options: Record<string, AnyMessage>;
  };
  t.deepEqual(
    unpack(
      http2.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
      ]!,
    ),
    {
      explicit_http_config: {
        http2_protocol_options: {},
        protocol_config: "http2_protocol_options",
      },
      upstream_protocol_options: "explicit_http_config",
    },
  );
  t.false(
    "typed_extension_protocol_options" in
      (unpack(gateway.resources(TypeUrl.Cluster).get("baseline/api")!.any) as object),
    "http1 is Envoy's default",
  );
});

test("a fork's declared protocol overrides the baseline's", (t) => {
  const record = {
    ...shard("dave", "dave-key", { api: "10.0.0.11:80" }),
    protocols: { api: "http2" as const },
  };
  const gateway = new Snapshot(forNode(translate({ ...state, shards: [record] }), "gateway"));
  const ingress = gatewayScope<{ virtual_hosts: GatewayVirtualHost[] }>(
    gateway.resources(TypeUrl.Route),
    { key: "dave-key" },
  );
  const api = ingress.virtual_hosts.find((v) => v.name === "api")!;
  const dave = unpack(
    api.matcher!.matcher_tree.exact_match_map.map["dave-key"]!.action.typed_config,
  ) as unknown as DecodedRoute;
  t.is(dave.route.cluster, "gateway/forks/http2");
  const web = ingress.virtual_hosts.find((v) => v.name === "web")!;
  t.is(web.matcher, undefined, "a service without forks: a plain route");
  t.deepEqual(
    web.routes?.map((r) => r.route.cluster),
    ["baseline/web"],
  );
  t.is(
    (unpack(api.matcher!.on_no_match.action.typed_config) as unknown as DecodedRoute).route.cluster,
    "baseline/api",
  );
});

test("the gateway's memoized ingress equals a from-scratch translation after a change", (t) => {
  const translator = new Translator();
  translator.translate(state);
  const carol = shard("carol", "carol-key", {
    api: "127.0.0.1:6002",
    web: "web.shard-carol.svc:80",
  });
  const next = { ...state, shards: [...state.shards, carol] };
  const incremental = new Snapshot(forNode(translator.translate(next), "gateway"));
  const fresh = new Snapshot(forNode(translate(next), "gateway"));
  for (const typeUrl of Object.values(TypeUrl)) {
    t.is(incremental.version(typeUrl), fresh.version(typeUrl), typeUrl);
  }
  t.true(incremental.consistent());
});

test("a snapshot built from the one it replaces has the versions and resources of a fresh one", (t) => {
  const translator = new Translator();
  const first = new Snapshot(forNode(translator.translate(state), "grpc"));
  const rekeyed = state.shards.map((s) =>
    s.name === "alice" ? { ...s, routingKey: "new-key" } : s,
  );
  const next = forNode(translator.translate({ ...state, shards: rekeyed }), "grpc");
  const reused = new Snapshot(next, first);
  const fresh = new Snapshot(next);
  for (const typeUrl of Object.values(TypeUrl)) {
    t.is(reused.version(typeUrl), fresh.version(typeUrl), typeUrl);
    t.deepEqual(
      [...reused.resources(typeUrl).keys()].sort(),
      [...fresh.resources(typeUrl).keys()].sort(),
    );
  }
  t.is(reused.resources(TypeUrl.Cluster), first.resources(TypeUrl.Cluster), "clusters reused");
  t.not(reused.version(TypeUrl.Route), first.version(TypeUrl.Route), "routes recomputed");
});

test("a snapshot checked against the one it replaces finds what a change broke, and what it fixed", (t) => {
  const resources = translate(state);
  const first = new Snapshot(resources);
  t.deepEqual(first.inconsistencies(), []);
  // Removing a cluster a route still names, or the load assignment of an EDS cluster.
  const noCluster = new Snapshot(
    {
      ...resources,
      [TypeUrl.Cluster]: resources[TypeUrl.Cluster].filter((c) => c.name !== "shard/bob/api"),
    },
    first,
  );
  t.true(
    noCluster.inconsistencies().some((p) => p.includes("cluster shard/bob/api does not exist")),
  );
  const noEndpoints = new Snapshot(
    {
      ...resources,
      [TypeUrl.Endpoint]: resources[TypeUrl.Endpoint].filter((c) => c.name !== "baseline/api"),
    },
    first,
  );
  t.true(
    noEndpoints
      .inconsistencies()
      .some((p) => p.includes("EDS cluster baseline/api has no ClusterLoadAssignment")),
  );
  // A failed check leaves the predecessor's reference counts intact: a retry from it that drops
  // bob's shard (its routes and its cluster together) is consistent, and the one after it that
  // drops only a cluster still named is not.
  const withoutBob = translate({ ...state, shards: state.shards.filter((s) => s.name !== "bob") });
  const second = new Snapshot(withoutBob, first);
  t.deepEqual(second.inconsistencies(), []);
  const third = new Snapshot(
    {
      ...withoutBob,
      [TypeUrl.Cluster]: withoutBob[TypeUrl.Cluster].filter((c) => c.name !== "baseline/api"),
    },
    second,
  );
  t.true(third.inconsistencies().some((p) => p.includes("cluster baseline/api does not exist")));
  // The same state as a fresh snapshot gives the same answers.
  t.deepEqual(
    third.inconsistencies().sort(),
    new Snapshot({
      ...withoutBob,
      [TypeUrl.Cluster]: withoutBob[TypeUrl.Cluster].filter((c) => c.name !== "baseline/api"),
    })
      .inconsistencies()
      .sort(),
  );
});

test("incremental translation (updates in place, appends, removals, expiry) always equals a fresh one", (t) => {
  const translator = new Translator();
  const at = (minutes: number) => new Date(Date.parse("2026-01-01T00:00:00Z") + minutes * 60_000);
  const record = (i: number, version: number, expiresMinutes = 60): ShardRecord => ({
    ...shard(`s-${i}`, `key-${i}-${version}`, {
      [i % 2 === 0 ? "api" : "web"]: `127.0.0.1:${7000 + i}`,
    }),
    expiresAt: at(expiresMinutes).toISOString(),
  });
  let records = Array.from({ length: 20 }, (_, i) => record(i, 0));
  const steps: [string, () => void, number][] = [
    ["update one in place", () => (records[3] = record(3, 1)), 0],
    ["update two", () => ((records[0] = record(0, 2)), (records[19] = record(19, 2))), 1],
    ["append", () => records.push(record(20, 0), record(21, 0)), 2],
    ["remove", () => (records = records.filter((_, i) => i !== 5)), 3],
    ["one expires soon", () => (records[7] = record(7, 3, 10)), 4],
    ["time passes its expiry", () => undefined, 11],
    ["it is renewed", () => (records[7] = record(7, 4, 120)), 12],
    ["nothing changes", () => undefined, 13],
  ];
  for (const [what, change, minutes] of steps) {
    change();
    const next: RoutingState = { ...state, shards: [...records], now: at(minutes) };
    const incremental = new Snapshot(forNode(translator.translate(next), "gateway"));
    const fresh = new Snapshot(forNode(translate(next), "gateway"));
    for (const typeUrl of Object.values(TypeUrl)) {
      t.is(incremental.version(typeUrl), fresh.version(typeUrl), `${what}: ${typeUrl}`);
    }
    const grpcIncremental = new Snapshot(forNode(translator.translate(next), "grpc"));
    const grpcFresh = new Snapshot(forNode(translate(next), "grpc"));
    t.is(
      grpcIncremental.version(TypeUrl.Cluster),
      grpcFresh.version(TypeUrl.Cluster),
      `${what}: gRPC clusters`,
    );
  }
  const expired = new Snapshot(
    forNode(translator.translate({ ...state, shards: records, now: at(200) }), "grpc"),
  );
  t.false([...expired.resources(TypeUrl.Cluster).keys()].some((n) => n.startsWith("shard/s-")));
});

test("through random shard changes, incremental translation equals a fresh one, and chained snapshots check like fresh ones and find a cluster removed while still named", (t) => {
  // Each step's snapshot is built from the last good one (the incremental check); a broken variant
  // (one cluster a route names left out) is built from it too and must fail like a fresh one, and
  // the next good step, built from the same predecessor, must still pass.
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          op: fc.constantFrom("rekey", "move", "add", "remove", "refork", "rekey two"),
          i: fc.nat(11),
          v: fc.nat(1000),
        }),
        { minLength: 1, maxLength: 25 },
      ),
      fc.nat(),
      (changes, pick) => {
        const translator = new Translator();
        const services = ["api", "web"];
        const fork = (i: number, v: number): Record<string, string> => ({
          [services[(i + v) % 2]!]:
            v % 3 === 0 ? `fork-${i}-${v}.shard.svc:80` : `127.0.0.1:${7000 + ((i * 7 + v) % 50)}`,
        });
        let records = Array.from({ length: 6 }, (_, i) => shard(`s-${i}`, `k-${i}`, fork(i, 0)));
        const base = { baseline: state.baseline, sandboxes: [] };
        let previous: Snapshot | undefined;
        for (const { op, i, v } of changes) {
          const at = i % Math.max(1, records.length);
          const old = records[at];
          if (op === "add" || old === undefined) {
            records = [...records, shard(`n-${i}-${v}`, `k-n-${i}-${v}`, fork(i, v))];
          } else if (op === "remove") {
            records = records.filter((_, j) => j !== at);
          } else if (op === "move" && records.length > 1) {
            records = [...records.slice(0, at), ...records.slice(at + 1), old];
          } else if (op === "rekey two") {
            // Two records changed in one call: a service's changed middle spans the forks between.
            const other = (at + 3) % records.length;
            records = records.map((r, j) =>
              j === at || j === other ? { ...r, routingKey: `k-${j}-${v}-two` } : r,
            );
          } else {
            const next = [...records];
            next[at] =
              op === "refork"
                ? { ...old, forks: fork(i, v + 1) }
                : { ...old, routingKey: `k-${i}-${v}` };
            records = next;
          }
          const all = translator.translate({ ...base, shards: records });
          const scratch = translate({ ...base, shards: records });
          for (const kind of ["gateway", "grpc"] as const) {
            const [mine, theirs] = [
              new Snapshot(forNode(all, kind)),
              new Snapshot(forNode(scratch, kind)),
            ];
            for (const typeUrl of Object.values(TypeUrl)) {
              t.is(mine.version(typeUrl), theirs.version(typeUrl), `${op}: ${kind} ${typeUrl}`);
            }
          }
          const resources = forNode(all, "grpc");
          const fresh = new Snapshot(resources);
          if (previous !== undefined) {
            const named = [...fresh.resources(TypeUrl.Route).values()].flatMap((r) =>
              (unpack(r.any) as { virtual_hosts: VirtualHost[] }).virtual_hosts.flatMap((vh) =>
                vh.routes.map((route) => route.route.cluster),
              ),
            );
            const victim = named[pick % named.length]!;
            const broken = {
              ...resources,
              [TypeUrl.Cluster]: resources[TypeUrl.Cluster].filter((c) => c.name !== victim),
            };
            const expected = new Snapshot(broken).inconsistencies().sort();
            t.true(expected.length > 0, victim);
            t.deepEqual(new Snapshot(broken, previous).inconsistencies().sort(), expected);
          }
          const chained = new Snapshot(resources, previous);
          t.deepEqual(chained.inconsistencies(), fresh.inconsistencies());
          t.deepEqual(chained.inconsistencies(), []);
          previous = chained;
        }
      },
    ),
    { numRuns: 60, seed: 20261202 },
  );
});

test("a baseline host among the sandboxes' host names is refused: the gateway would never route it to the service", (t) => {
  const config = routingConfigSchema.safeParse({
    etcdEndpoints: ["http://127.0.0.1:2379"],
    domain: "svc.cluster.local",
    baseline: [
      {
        name: "checkout",
        destination: "10.0.0.1:80",
        hosts: ["checkout.shop", "checkout.sandbox.svc.cluster.local"],
      },
    ],
  });
  t.false(config.success);
  t.deepEqual(config.error!.issues[0]!.path, ["baseline", 0, "hosts", 1]);
  t.regex(config.error!.issues[0]!.message, /ends with "\.sandbox\.svc\.cluster\.local"/);
});

test("incremental translation sees an array changed in place, and shards back after a clock step or without now", (t) => {
  const translator = new Translator();
  const at = (minutes: number) => new Date(Date.parse("2026-01-01T00:00:00Z") + minutes * 60_000);
  const records: ShardRecord[] = [
    { ...shard("a", "a-key", { api: "127.0.0.1:7001" }), expiresAt: at(10).toISOString() },
    { ...shard("b", "b-key", { api: "127.0.0.1:7002" }), expiresAt: at(60).toISOString() },
  ];
  const same = (next: RoutingState, what: string) => {
    const incremental = new Snapshot(forNode(translator.translate(next), "grpc"));
    const fresh = new Snapshot(forNode(translate(next), "grpc"));
    t.is(incremental.version(TypeUrl.Cluster), fresh.version(TypeUrl.Cluster), what);
  };
  same({ ...state, shards: records, now: at(0) }, "first");
  records[1] = { ...records[1]!, forks: { api: "127.0.0.1:7003" } };
  same({ ...state, shards: records, now: at(1) }, "the same array, changed in place");
  same({ ...state, shards: records, now: at(20) }, "a expired");
  same({ ...state, shards: records, now: at(5) }, "the clock stepped back: a is live again");
  same({ ...state, shards: records, now: at(20) }, "a expired again");
  same({ ...state, shards: records }, "no now: every shard");
});
