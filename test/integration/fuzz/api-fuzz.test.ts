/**
 * Fuzz suite of the scheduler API (issue 13): per endpoint family (sandboxes, shards, nodes,
 * logs/migrate) at least 1,000 generated hostile requests against ONE real scheduler on a real
 * etcd, loopback only. Every request is built to be invalid in exactly one known place, so each
 * must be answered with a 4xx whose message names that place, and never with a 5xx. fast-check
 * generates the cases (seeded: a failure prints the seed and the shrunk request to replay).
 */
import test from "ava";
import fc from "fast-check";
import { etcdFor, PLATFORM_TOKEN, schedulerFor } from "../../helpers/runtime";

/** Requests per family: the floor. */
const RUNS = 1000;
const SEED = Number(process.env.SHARDWORKS_FUZZ_SEED ?? 1312);

/** One hostile request and the field its answer must name. */
interface Hostile {
  method: string;
  path: string;
  body?: string;
  contentType?: string | null;
  token?: string;
  /** Text the error message must contain (the field, key or header at fault). */
  names: string;
}

// ---- value generators, each invalid for its field by construction ---------------------------

const control = fc.constantFrom("\u0000", "\r\n", "\n", "\t", "\u001b", "\u007f");
const junk = fc.string({ maxLength: 40 });
/** Any JSON value that is not a string. */
const notString = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.constantFrom("a", "b"), fc.integer(), { maxKeys: 2 }),
);
const notNumber = fc.oneof(
  fc.string({ maxLength: 10 }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 2 }),
);
/** Strings that are not DNS labels: an uppercase letter, '_' or '.', a leading '-', or too long. */
const notDnsLabel = fc.oneof(
  fc.tuple(junk, fc.constantFrom("A", "_", "Z", "!", " ", "é"), junk).map(([a, b, c]) => a + b + c),
  junk.map((s) => `-${s}`),
  fc.constant("x".repeat(64)),
  fc.constant(""),
  notString,
);
const badImage = fc.oneof(
  fc
    .tuple(fc.constantFrom("registry.example.com/app:1", "oci:/tmp/x"), control)
    .map(([a, b]) => a + b),
  fc.integer({ min: 65536, max: 999_999 }).map((p) => `registry.example.com:${p}/app:1`),
  fc.constantFrom(
    "",
    "busybox",
    "UPPER/app:1",
    "registry.example.com/",
    "registry.example.com/app:",
    "a".repeat(600),
  ),
  fc.tuple(junk, fc.constantFrom(" ", "::", "@sha256:xyz")).map(([a, b]) => `r.example/${a}${b}`),
  notString,
);
const badCommand = fc.oneof(
  fc.constant([]),
  notString.filter((v) => !Array.isArray(v)),
  fc
    .array(notString, { minLength: 1, maxLength: 3 })
    .filter((a) => a.some((v) => typeof v !== "string")),
  fc.tuple(junk, junk).map(([a, b]) => [`${a}\u0000${b}`]),
  fc.constant(Array.from({ length: 257 }, () => "x")),
);
const badEnvName = fc.oneof(
  fc.tuple(fc.integer({ min: 0, max: 9 }), junk).map(([d, s]) => `${d}${s}`),
  fc.tuple(junk, fc.constantFrom("-", "=", ".", " ", "\u0000", "$")).map(([s, c]) => `A${s}${c}`),
  fc.constant(""),
);
const badEnv = fc.oneof(
  badEnvName.map((name) => ({ [name]: "v" })),
  fc.tuple(fc.constantFrom("A", "PATH_X"), notString).map(([k, v]) => ({ [k]: v })),
  fc.array(fc.string(), { maxLength: 2 }),
);
const badResources = fc.oneof(
  fc.record({ cpuMillis: fc.integer({ max: 0 }), memoryMiB: fc.constant(64) }),
  fc.record({ cpuMillis: fc.constant(100), memoryMiB: fc.integer({ min: 1_048_577 }) }),
  fc.record({ cpuMillis: fc.double({ min: 0.1, max: 0.9 }), memoryMiB: fc.constant(64) }),
  fc.record({ cpuMillis: notNumber, memoryMiB: fc.constant(64) }),
  fc.record({ cpuMillis: fc.constant(100), memoryMiB: fc.constant(64), gpu: fc.integer() }),
  notString.filter((v) => typeof v !== "object" || v === null || Array.isArray(v)),
);
const badPorts = fc.oneof(
  fc.array(fc.oneof(fc.integer({ max: 0 }), fc.integer({ min: 65536 })), {
    minLength: 1,
    maxLength: 3,
  }),
  fc.array(notNumber, { minLength: 1, maxLength: 2 }),
  fc.integer({ min: 1, max: 65535 }).map((p) => [p, p]),
  fc.constant(Array.from({ length: 33 }, (_, i) => 1000 + i)),
  fc.string(),
);

type Valid = Record<string, unknown>;
const validSandbox: Valid = { image: "registry.example.com/app:1", command: ["true"] };
const validShard: Valid = { routingKey: "key-fuzz", owner: "fuzz", forks: [] };

/** A valid body with one field replaced, as a request naming that field. */
const withField =
  (base: Valid, method: string, path: string) =>
  ([field, value]: [string, unknown]): Hostile => ({
    method,
    path,
    body: JSON.stringify({ ...base, [field]: value }),
    names: field,
  });

/** Families of body-level hostility every JSON endpoint shares. */
const bodyLevel = (base: Valid, method: string, path: string) =>
  fc.oneof(
    // Unknown field.
    fc
      .stringMatching(/^[a-z][a-zA-Z0-9]{0,12}$/)
      .filter((k) => !(k in base) && !knownFields.has(k))
      .map((k) => ({ method, path, body: JSON.stringify({ ...base, [k]: 1 }), names: k })),
    // Malformed JSON: a valid body cut short.
    fc
      .integer({ min: 1, max: JSON.stringify(base).length - 1 })
      .map((n) => ({ method, path, body: JSON.stringify(base).slice(0, n), names: "JSON" })),
    // The same key twice.
    fc.constantFrom(...Object.keys(base)).map((k) => ({
      method,
      path,
      body: `${JSON.stringify(base).slice(0, -1)},${JSON.stringify(k)}:${JSON.stringify(base[k])}}`,
      names: `${k}: the key appears twice`,
    })),
    // Not sent as JSON.
    fc
      .constantFrom("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", null)
      .map((contentType) => ({
        method,
        path,
        body: JSON.stringify(base),
        contentType,
        names: "content-type",
      })),
  );

const knownFields = new Set([
  "image",
  "command",
  "env",
  "resources",
  "driver",
  "nodeSelector",
  "tolerations",
  "ports",
  "network",
  "shard",
  "id",
  "routingKey",
  "owner",
  "forks",
  "ttlSeconds",
  "node",
  "shardUid",
]);

// ---- the families -----------------------------------------------------------------------------

const sandboxes = (shardToken: string): fc.Arbitrary<Hostile> =>
  fc.oneof(
    fc
      .oneof(
        fc.tuple(fc.constant("image"), badImage),
        fc.tuple(fc.constant("command"), badCommand),
        fc.tuple(fc.constant("env"), badEnv),
        fc.tuple(fc.constant("resources"), badResources),
        fc.tuple(fc.constant("ports"), badPorts),
        fc.tuple(
          fc.constant("network"),
          notString.filter((v) => typeof v !== "boolean"),
        ),
        fc.tuple(
          fc.constant("driver"),
          fc.oneof(
            junk.filter((s) => !["process", "qemu", "firecracker"].includes(s)),
            notString,
          ),
        ),
        fc.tuple(fc.constant("shard"), notDnsLabel),
        fc.tuple(fc.constant("id"), notDnsLabel),
        fc.tuple(
          fc.constant("nodeSelector"),
          fc.oneof(fc.array(fc.string(), { maxLength: 2 }), fc.string(), fc.integer()),
        ),
        fc.tuple(
          fc.constant("tolerations"),
          fc.oneof(fc.string(), fc.constant([{ value: "x" }]), fc.constant([1])),
        ),
        fc.tuple(fc.constant("shardUid"), fc.stringMatching(/^[0-9a-f]{32}$/)),
      )
      .map(withField(validSandbox, "POST", "/v1/sandboxes")),
    bodyLevel(validSandbox, "POST", "/v1/sandboxes"),
    // A shard token aiming a pull at the node's own network.
    fc
      .tuple(
        fc.constantFrom(
          "127.0.0.1",
          "127.9.9.9",
          "10.1.2.3",
          "192.168.0.1",
          "169.254.169.254",
          "172.20.0.1",
          "localhost",
          "[::1]",
          "[fe80::1]",
          "metadata.google.internal",
          "x.internal",
          "0.0.0.0",
        ),
        fc.integer({ min: 1, max: 65535 }),
      )
      .map(([host, port]) => ({
        method: "POST",
        path: "/v1/sandboxes",
        body: JSON.stringify({ ...validSandbox, image: `${host}:${port}/app:1` }),
        token: shardToken,
        names: "image",
      })),
    // Hostile query strings and ids.
    fc
      .tuple(
        fc.constantFrom("shard", "node", "phase"),
        notDnsLabel.filter((v): v is string => typeof v === "string" && v !== ""),
      )
      .map(([k, v]) => ({
        method: "GET",
        path: `/v1/sandboxes?${k}=${encodeURIComponent(v)}`,
        names: `query.${k}`,
      })),
    fc.stringMatching(/^[A-Z_][A-Za-z0-9_]{0,20}$/).map((id) => ({
      method: "GET",
      path: `/v1/sandboxes/${id}`,
      names: "id",
    })),
  );

const shards: fc.Arbitrary<Hostile> = fc.oneof(
  fc
    .oneof(
      fc.tuple(
        fc.constant("routingKey"),
        fc.oneof(notDnsLabel, fc.constant("abc"), fc.constant("k".repeat(33))),
      ),
      fc.tuple(
        fc.constant("owner"),
        fc.oneof(
          fc.tuple(junk, control, junk).map(([a, b, c]) => `o${a}${b}${c}`),
          fc.constant(""),
          fc.constant("o".repeat(254)),
          notString,
        ),
      ),
      fc.tuple(
        fc.constant("ttlSeconds"),
        fc.oneof(
          fc.integer({ max: 0 }),
          fc.integer({ min: 7 * 86_400 + 1 }),
          fc.double({ min: 1.1, max: 9.9 }),
          notNumber,
        ),
      ),
      fc.tuple(
        fc.constant("forks"),
        fc.oneof(
          fc
            .oneof(
              fc.constantFrom(
                "1.2.3.4.5",
                "999.1.1.1",
                "a.1",
                "256.0.0.1",
                "0x7f.1",
                "a..b",
                "-x.y",
                "2852039166",
                "0251.0376.0251.0376",
              ),
              fc
                .tuple(junk, fc.constantFrom("/", "@", " ", "_", "\u0000"))
                .map(([a, b]) => `h${a}${b}x`),
            )
            .chain((host) =>
              fc
                .integer({ min: 1, max: 99999 })
                .map((port) => [{ service: "api", destination: `${host}:${port}` }]),
            ),
          fc
            .integer({ min: 65536, max: 99999 })
            .map((port) => [{ service: "api", destination: `api.example.com:${port}` }]),
          notDnsLabel.map((service) => [{ service, destination: "api.example.com:80" }]),
          fc.constant([
            { service: "api", destination: "a.example.com:80" },
            { service: "api", destination: "b.example.com:80" },
          ]),
          fc.string(),
        ),
      ),
    )
    .map(withField(validShard, "PUT", "/v1/shards/fuzz")),
  bodyLevel(validShard, "PUT", "/v1/shards/fuzz"),
  fc.stringMatching(/^[A-Z_][A-Za-z0-9_-]{0,70}$/).map((name) => ({
    method: "PUT",
    path: `/v1/shards/${name}`,
    body: JSON.stringify(validShard),
    names: "name",
  })),
);

const nodes = (shardToken: string): fc.Arbitrary<Hostile> =>
  fc.oneof(
    fc.tuple(fc.stringMatching(/^[a-z][a-zA-Z0-9_]{0,15}$/), junk).map(([k, v]) => ({
      method: "GET",
      path: `/v1/nodes?${k}=${encodeURIComponent(v)}`,
      names: "query",
    })),
    fc.constantFrom("", "?x=1").map((q) => ({
      method: "GET",
      path: `/v1/nodes${q}`,
      token: shardToken,
      names: q ? "query" : "platform token",
    })),
  );

const logsAndMigrate: fc.Arbitrary<Hostile> = fc.oneof(
  junk
    .filter((v) => !["true", "false", "1", "0"].includes(v))
    .map((v) => ({
      method: "GET",
      path: `/v1/sandboxes/some-id/logs?follow=${encodeURIComponent(v)}`,
      names: "query.follow",
    })),
  fc
    .stringMatching(/^[a-z][a-z0-9]{0,10}$/)
    .filter((k) => k !== "follow")
    .map((k) => ({
      method: "GET",
      path: `/v1/sandboxes/some-id/logs?${k}=1`,
      names: k,
    })),
  fc.stringMatching(/^[A-Z_][A-Za-z0-9_]{0,20}$/).map((id) => ({
    method: "GET",
    path: `/v1/sandboxes/${id}/logs`,
    names: "id",
  })),
  fc
    .oneof(
      fc.tuple(junk, fc.constantFrom("A", "_", " ", "..", "/")).map(([a, b]) => `n${a}${b}`),
      fc.constant("x".repeat(254)),
      notString,
    )
    .map((node) => ({
      method: "POST",
      path: "/v1/sandboxes/some-id/migrate",
      body: JSON.stringify({ node }),
      names: "node",
    })),
  bodyLevel({ node: "node-a" }, "POST", "/v1/sandboxes/some-id/migrate"),
);

// ---- the run ----------------------------------------------------------------------------------

test("hostile requests to every endpoint family are a 4xx naming the field, never a 5xx", async (t) => {
  const etcd = await etcdFor(t);
  const scheduler = await schedulerFor(t, etcd, { placer: false });
  const created = await fetch(`${scheduler.url}/v1/shards/alice`, {
    method: "PUT",
    headers: { authorization: `Bearer ${PLATFORM_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ routingKey: "key-alice", owner: "alice", forks: [] }),
  });
  const shardToken = ((await created.json()) as { token: string }).token;

  const send = async (request: Hostile): Promise<{ status: number; message: string }> => {
    const headers: Record<string, string> = {
      authorization: `Bearer ${request.token ?? PLATFORM_TOKEN}`,
    };
    const type = request.contentType === undefined ? "application/json" : request.contentType;
    if (type !== null && request.body !== undefined) headers["content-type"] = type;
    const response = await fetch(`${scheduler.url}${request.path}`, {
      method: request.method,
      headers,
      // A Blob: fetch adds no content-type of its own.
      ...(request.body === undefined ? {} : { body: new Blob([request.body]) }),
    });
    const text = await response.text();
    let message = text;
    try {
      message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? text;
    } catch {
      // keep the text
    }
    return { status: response.status, message };
  };

  const families: [string, fc.Arbitrary<Hostile>][] = [
    ["sandboxes", sandboxes(shardToken)],
    ["shards", shards],
    ["nodes", nodes(shardToken)],
    ["logs/migrate", logsAndMigrate],
  ];
  for (const [family, arbitrary] of families) {
    let sent = 0;
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(arbitrary, async (request) => {
        sent += 1;
        const { status, message } = await send(request);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        const where = `${request.method} ${request.path} ${JSON.stringify(request.body)?.slice(0, 300)}`;
        if (status < 400 || status >= 500) throw new Error(`${where}: ${status} ${message}`);
        if (!message.includes(request.names)) {
          throw new Error(`${where}: ${status} "${message}" does not name "${request.names}"`);
        }
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    );
    t.true(sent >= RUNS, `${family}: ${sent} hostile requests`);
    const answers = [...statuses].map(([status, n]) => `${n}× ${status}`).join(", ");
    t.log(`${family}: ${sent} hostile requests, every one a 4xx naming the field (${answers})`);
  }
  // And the service still serves.
  const healthy = await fetch(`${scheduler.url}/healthz`);
  t.is(healthy.status, 200);
});
