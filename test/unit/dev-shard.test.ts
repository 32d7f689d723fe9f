/* eslint-disable @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-return, @typescript-eslint/no-unsafe-argument --
   Recorded resource inputs are untyped JSON; tests read into them freely. */
import test from "ava";
import * as pulumi from "@pulumi/pulumi";
import {
  DevShard,
  EXPIRES_AT_ANNOTATION,
  DEFAULT_READY_TIMEOUT_SECONDS,
  SKIP_AWAIT_ANNOTATION,
  TIMEOUT_SECONDS_ANNOTATION,
  WAIT_FOR_ANNOTATION,
  baselineOf,
  defaultRoutingKey,
  validateForks,
  validateForksAgainstBaseline,
  validateReadyTimeout,
  validateShardName,
  validateTtl,
  type ShardRegistrationInput,
} from "../../components";
import { routingKeySchema } from "../../contract/model";
import { podSpecOf } from "./helpers/k8s-schema";
import {
  descendantsOf,
  named,
  ofType,
  recordBuild,
  recorded,
  settled,
  unwrap,
} from "./helpers/pulumi";
import { reasonOf, testObjectsMatchOpenApi, throwsBeforeAnyChild } from "./helpers/component-tests";

const now = new Date("2026-11-22T10:00:00.000Z");
const baseline = {
  checkout: { image: "ghcr.io/acme/checkout:main", port: 8080, namespace: "default" },
  payments: {
    image: "ghcr.io/acme/payments:main",
    port: 9090,
    namespace: "default",
    readinessPath: "/ready",
  },
};
const registrations: ShardRegistrationInput[] = [];
let alice: DevShard;
let bob: DevShard;

test.before(async () => {
  ({ alice, bob } = await recordBuild(() => ({
    alice: new DevShard("shard-alice", {
      shardName: "alice",
      owner: "alice@example.com",
      forks: {
        checkout: { image: "ghcr.io/acme/checkout:alice", env: { FEATURE_X: "on" } },
        payments: { env: { LOG_LEVEL: "debug" } },
      },
      baseline,
      gatewayNamespace: "shardworks-gateway",
      ttlSeconds: 86_400,
      now,
      readyTimeoutSeconds: 45,
      register: (input, opts) => {
        registrations.push(input);
        return new pulumi.ComponentResource(
          "test:index:Registration",
          "shard-alice-registration",
          {},
          opts,
        );
      },
    }),
    bob: new DevShard("shard-bob", {
      shardName: "bob",
      owner: "bob",
      routingKey: "bob-key",
      baseline,
      gatewayNamespace: "shardworks-gateway",
      ttlSeconds: 3600,
      quota: { cpu: "2", memory: "4Gi", pods: 5 },
      now,
    }),
  })));
});

test("every child is named after the shard and parented to it", (t) => {
  for (const shard of ["shard-alice", "shard-bob"]) {
    const children = recorded.filter((r) => r.parent === shard);
    t.true(children.length >= 8, shard);
    for (const child of children) t.true(child.name.startsWith(`${shard}-`), child.name);
  }
  t.is(named("shard-alice").type, "shardworks:components:DevShard");
});

test("every shard namespace has a quota, a LimitRange and a default-deny policy", (t) => {
  for (const [shard, ns] of [
    ["shard-alice", "shard-alice"],
    ["shard-bob", "shard-bob"],
  ] as const) {
    t.is(named(`${shard}-namespace`).inputs["metadata"].name, ns);
    const inNs = (type: string) =>
      ofType(type, shard).filter((r) => r.inputs["metadata"].namespace === ns);
    t.is(inNs("kubernetes:core/v1:ResourceQuota").length, 1, `${ns} quota`);
    t.is(inNs("kubernetes:core/v1:LimitRange").length, 1, `${ns} limits`);
    const policies = inNs("kubernetes:networking.k8s.io/v1:NetworkPolicy").map(
      (r) => r.inputs["spec"],
    );
    t.true(
      policies.some(
        (p) =>
          Object.keys(p.podSelector).length === 0 &&
          p.ingress === undefined &&
          p.policyTypes.includes("Ingress"),
      ),
      `${ns} default deny`,
    );
    t.true(
      policies.some(
        (p) =>
          p.ingress?.[0]?.from?.[0]?.namespaceSelector?.matchLabels?.[
            "kubernetes.io/metadata.name"
          ] === "shardworks-gateway",
      ),
      `${ns} allow from gateway`,
    );
  }
  t.deepEqual(named("shard-bob-quota").inputs["spec"].hard, {
    "requests.cpu": "2",
    "requests.memory": "4Gi",
    "limits.cpu": "2",
    "limits.memory": "4Gi",
    pods: "5",
    "services.loadbalancers": "0",
    "services.nodeports": "0",
  });
  t.deepEqual(named("shard-alice-limits").inputs["spec"].limits[0].default, {
    cpu: "500m",
    memory: "512Mi",
  });
});

test("the namespace carries the TTL and owner; the owner and agents are bound to shard-owner", (t) => {
  const ns = named("shard-alice-namespace").inputs["metadata"];
  t.is(ns.annotations[EXPIRES_AT_ANNOTATION], "2026-11-23T10:00:00.000Z");
  t.is(ns.annotations["shardworks.dev/owner"], "alice@example.com");
  t.is(ns.labels["shardworks.dev/shard"], "alice");
  t.is(
    named("shard-bob-namespace").inputs["metadata"].annotations[EXPIRES_AT_ANNOTATION],
    "2026-11-22T11:00:00.000Z",
  );

  const owner = named("shard-alice-owner").inputs;
  t.is(owner["metadata"].namespace, "shard-alice");
  t.deepEqual(owner["roleRef"], {
    apiGroup: "rbac.authorization.k8s.io",
    kind: "ClusterRole",
    name: "shardworks:shard-owner",
  });
  t.deepEqual(owner["subjects"], [
    { kind: "User", name: "alice@example.com", apiGroup: "rbac.authorization.k8s.io" },
  ]);
  t.is(named("shard-alice-agents").inputs["metadata"].name, "shard-agents");
  t.deepEqual(named("shard-alice-agents-owner").inputs["subjects"], [
    { kind: "ServiceAccount", name: "shard-agents", namespace: "shard-alice" },
  ]);
});

test("each fork is a Deployment + Service overriding its baseline service", (t) => {
  const checkout = podSpecOf(named("shard-alice-fork-checkout").inputs)!.containers[0];
  t.is(checkout.image, "ghcr.io/acme/checkout:alice");
  t.deepEqual(checkout.env, [{ name: "FEATURE_X", value: "on" }]);
  t.is(checkout.ports[0].containerPort, 8080);
  const payments = podSpecOf(named("shard-alice-fork-payments").inputs)!.containers[0];
  t.is(payments.image, "ghcr.io/acme/payments:main", "no image override: the baseline's image");
  t.is(payments.ports[0].containerPort, 9090, "no port override: the baseline's port");
  const svc = named("shard-alice-svc-payments").inputs;
  t.is(svc["metadata"].name, "payments");
  t.is(svc["metadata"].namespace, "shard-alice");
  t.deepEqual(svc["spec"].ports, [{ name: "http", port: 9090, targetPort: 9090, protocol: "TCP" }]);
  t.is(ofType("kubernetes:apps/v1:Deployment", "shard-bob").length, 0, "bob has no forks");
});

test("a fork is ready once it serves: a TCP probe on its port, or an HTTP GET of the baseline's readiness path", (t) => {
  const checkout = podSpecOf(named("shard-alice-fork-checkout").inputs)!.containers[0];
  t.deepEqual(checkout.readinessProbe, {
    tcpSocket: { port: 8080 },
    periodSeconds: 1,
    failureThreshold: 3,
  });
  const payments = podSpecOf(named("shard-alice-fork-payments").inputs)!.containers[0];
  t.deepEqual(payments.readinessProbe, {
    httpGet: { path: "/ready", port: 9090 },
    periodSeconds: 1,
    failureThreshold: 3,
  });
  for (const path of ["healthz", "/with space", ""]) {
    t.is(
      reasonOf(() => validateForks({ checkout: { readinessPath: path } })),
      `forks.checkout.readinessPath: ${JSON.stringify(path)} is not a URL path; write it like "/healthz"`,
    );
  }
});

test("outputs: namespace, routing key, fork destinations, expiry", async (t) => {
  t.is(await unwrap(alice.namespace), "shard-alice");
  t.is(await unwrap(alice.routingKey), "shard-alice");
  t.is(await unwrap(bob.routingKey), "bob-key");
  t.deepEqual(await unwrap(alice.forkDestinations), {
    checkout: "checkout.shard-alice.svc.cluster.local:8080",
    payments: "payments.shard-alice.svc.cluster.local:9090",
  });
  t.deepEqual(await unwrap(bob.forkDestinations), {});
  t.is(await unwrap(alice.expiresAt), "2026-11-23T10:00:00.000Z");
});

test("the registration seam gets the routing facts and is a child of the shard", async (t) => {
  t.is(registrations.length, 1);
  const input = registrations[0]!;
  t.is(input.name, "alice");
  t.is(input.routingKey, "shard-alice");
  t.is(input.ttlSeconds, 86_400);
  t.is(input.expiresAt, "2026-11-23T10:00:00.000Z");
  t.deepEqual(await unwrap(input.forkDestinations), await unwrap(alice.forkDestinations));
  t.is(named("shard-alice-registration").parent, "shard-alice");
});

test("forks are awaited: no skipAwait anywhere; the readiness timeout is on each fork's Deployment and Service", (t) => {
  for (const r of [...descendantsOf("shard-alice"), ...descendantsOf("shard-bob")]) {
    t.is(r.inputs["metadata"]?.annotations?.[SKIP_AWAIT_ANNOTATION], undefined, r.name);
  }
  for (const name of ["shard-alice-fork-checkout", "shard-alice-svc-checkout"]) {
    t.is(named(name).inputs["metadata"].annotations[TIMEOUT_SECONDS_ANNOTATION], "45", name);
  }
});

test("a fork Service waits for its cluster IP, and selects exactly the pods of its awaited Deployment", (t) => {
  for (const service of ["checkout", "payments"]) {
    const svc = named(`shard-alice-svc-${service}`).inputs;
    const deployment = named(`shard-alice-fork-${service}`).inputs;
    t.is(svc["metadata"].annotations[WAIT_FOR_ANNOTATION], "jsonpath={.spec.clusterIP}");
    // The Deployment has no waitFor: the provider's own awaiter waits for its pods Ready.
    t.is(deployment["metadata"].annotations[WAIT_FOR_ANNOTATION], undefined);
    t.deepEqual(svc["spec"].selector, deployment["spec"].selector.matchLabels);
    const podLabels = deployment["spec"].template.metadata.labels as Record<string, string>;
    for (const [key, value] of Object.entries(svc["spec"].selector as Record<string, string>)) {
      t.is(podLabels[key], value, key);
    }
  }
});

test("the readiness timeout defaults to 5 minutes and must be 1 s to 1 h", (t) => {
  t.is(DEFAULT_READY_TIMEOUT_SECONDS, 300);
  t.notThrows(() => validateReadyTimeout(3600));
  for (const bad of [0, 3601, 1.5]) {
    const error = t.throws(() => validateReadyTimeout(bad));
    t.like(error, {
      propertyPath: "readyTimeoutSeconds",
      reason: `${bad} must be whole seconds between 1 and 3600 (1 hour)`,
    });
  }
});

test("no fork container is privileged or may escalate", (t) => {
  for (const r of descendantsOf("shard-alice").filter(
    (r) => r.type === "kubernetes:apps/v1:Deployment",
  )) {
    for (const c of podSpecOf(r.inputs)!.containers) {
      t.is(c.securityContext.privileged, false);
      t.is(c.securityContext.allowPrivilegeEscalation, false);
    }
  }
});

testObjectsMatchOpenApi({ atLeast: 20 });

const badShards: [string, () => unknown, string][] = [
  [
    "upper-case name",
    () => validateShardName("Alice"),
    `shardName: "Alice" must be a DNS label (lowercase letters, digits, '-') of at most 57 characters`,
  ],
  [
    "long name",
    () => validateShardName("a".repeat(58)),
    `shardName: "${"a".repeat(58)}" must be a DNS label (lowercase letters, digits, '-') of at most 57 characters`,
  ],
  [
    "zero TTL",
    () => validateTtl(0),
    "ttlSeconds: 0 must be whole seconds between 1 and 604800 (7 days)",
  ],
  [
    "TTL over 7 days",
    () => validateTtl(604_801),
    "ttlSeconds: 604801 must be whole seconds between 1 and 604800 (7 days)",
  ],
  [
    "fractional TTL",
    () => validateTtl(1.5),
    "ttlSeconds: 1.5 must be whole seconds between 1 and 604800 (7 days)",
  ],
  [
    "fork name",
    () => validateForks({ Checkout: {} }),
    "forks.Checkout: the service name must be a DNS label (lowercase letters, digits, '-', at most 63)",
  ],
  [
    "fork name of 64 characters",
    () => validateForks({ ["a".repeat(64)]: {} }),
    `forks.${"a".repeat(64)}: the service name must be a DNS label (lowercase letters, digits, '-', at most 63)`,
  ],
  [
    "fork port",
    () => validateForks({ checkout: { port: 70000 } }),
    "forks.checkout.port: 70000 is not a port (1-65535)",
  ],
  [
    "unknown baseline",
    () => baselineOf("search", baseline),
    'forks.search: the platform has no baseline service "search"; known: checkout, payments',
  ],
  [
    "no baseline",
    () => baselineOf("search", {}),
    'forks.search: the platform has no baseline service "search"; known: (none)',
  ],
  [
    "fork of a service missing from the baseline",
    () => validateForksAgainstBaseline({ checkout: {}, search: {} }, baseline),
    'forks.search: the platform has no baseline service "search"; known: checkout, payments',
  ],
];
for (const [title, fn, expected] of badShards) {
  test(`validator rejects: ${title}`, (t) => {
    t.is(reasonOf(fn), expected);
  });
}

test("validators accept good values", (t) => {
  t.is(
    reasonOf(() => validateShardName("alice-2")),
    "no error",
  );
  t.is(
    reasonOf(() => validateTtl(604_800)),
    "no error",
  );
  t.is(
    reasonOf(() => validateForks({ checkout: { port: 80 } })),
    "no error",
  );
  t.is(baselineOf("checkout", baseline).port, 8080);
});

test("a bad shard fails in the constructor, before any child is registered", (t) => {
  throwsBeforeAnyChild(
    t,
    "shard-bad",
    () =>
      new DevShard("shard-bad", {
        shardName: "Bad",
        owner: "x",
        baseline,
        gatewayNamespace: "gw",
        ttlSeconds: 10,
      }),
  );
});

test("a shard whose fork names no baseline service fails in the constructor, before any child", (t) => {
  const error = throwsBeforeAnyChild(
    t,
    "shard-nosvc",
    () =>
      new DevShard("shard-nosvc", {
        shardName: "nosvc",
        owner: "x",
        forks: { search: {} },
        baseline,
        gatewayNamespace: "gw",
        ttlSeconds: 10,
      }),
  );
  t.is(error?.message, 'the platform has no baseline service "search"; known: checkout, payments');
});

test("a quota below 500m / 512Mi lowers the LimitRange defaults and fork limits to it", async (t) => {
  const tiny = new DevShard("shard-tiny", {
    shardName: "tiny",
    owner: "tiny",
    forks: { checkout: {} },
    baseline,
    gatewayNamespace: "shardworks-gateway",
    ttlSeconds: 60,
    quota: { cpu: "250m", memory: "64Mi", pods: 2 },
  });
  await settled(tiny.forkDestinations);
  const limits = named("shard-tiny-limits").inputs["spec"].limits[0];
  // The API server rejects a LimitRange whose default is above its max (the quota).
  t.deepEqual(limits.default, { cpu: "250m", memory: "64Mi" });
  t.deepEqual(limits.defaultRequest, { cpu: "100m", memory: "64Mi" });
  t.deepEqual(limits.max, { cpu: "250m", memory: "64Mi" });
  t.deepEqual(podSpecOf(named("shard-tiny-fork-checkout").inputs)!.containers[0].resources, {
    requests: { cpu: "100m", memory: "64Mi" },
    limits: { cpu: "250m", memory: "64Mi" },
  });
});

test("the default routing key fits the routing-key schema for every shard name length", (t) => {
  t.is(defaultRoutingKey("alice"), "shard-alice");
  for (const length of [1, 26, 27, 40, 57]) {
    const name = "a".repeat(length);
    const key = defaultRoutingKey(name);
    t.true(routingKeySchema.safeParse(key).success, `${key} (${key.length} chars)`);
  }
  t.not(defaultRoutingKey("a".repeat(40)), defaultRoutingKey(`${"a".repeat(39)}b`));
});
