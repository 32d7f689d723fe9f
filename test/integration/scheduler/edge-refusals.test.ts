/**
 * Specs a node would refuse (or a parser would crash on) are refused at the API's edge with a
 * 400 naming the field (issue 13, defects 6 and 10): bad env names, control characters in
 * `image` and `owner`, registry port 99999, fork destinations `new URL` rejects, node selectors
 * and tolerations that are not Kubernetes labels, duplicate JSON keys, and bodies that are not
 * `application/json`. Real etcd and scheduler, loopback only.
 */
import test from "ava";
import { etcdFor, PLATFORM_TOKEN, schedulerFor } from "../../helpers/runtime";

async function setup(t: import("ava").ExecutionContext) {
  const etcd = await etcdFor(t);
  const scheduler = await schedulerFor(t, etcd, { placer: false });
  const call = async (
    method: string,
    path: string,
    body: string,
    contentType: string | null = "application/json",
  ) => {
    const headers: Record<string, string> = { authorization: `Bearer ${PLATFORM_TOKEN}` };
    if (contentType !== null) headers["content-type"] = contentType;
    // A Blob body: fetch adds no content-type of its own to it.
    const response = await fetch(`${scheduler.url}${path}`, {
      method,
      headers,
      body: new Blob([body]),
    });
    return {
      status: response.status,
      message: ((await response.json()) as { error?: { message: string } }).error?.message ?? "",
    };
  };
  return { call };
}

const good = { image: "registry.example.com/app:1", command: ["true"] };
const shard = { routingKey: "key-alice", owner: "alice", forks: [] };

test("sandbox specs a node must refuse are a 400 naming the field", async (t) => {
  const { call } = await setup(t);
  const cases: [string, Record<string, unknown>, RegExp][] = [
    [
      "env name with '-'",
      { ...good, env: { "BAD-NAME": "x" } },
      /^env\.BAD-NAME: an environment variable name/,
    ],
    ["env name with '='", { ...good, env: { "A=B": "x" } }, /^env\.A=B: /],
    ["env name starting with a digit", { ...good, env: { "1X": "x" } }, /^env\.1X: /],
    ["empty env name", { ...good, env: { "": "x" } }, /^env\.: /],
    [
      "NUL in a registry image",
      { ...good, image: "registry.example.com/app:1\u0000" },
      /^image: must not contain control characters/,
    ],
    [
      "NUL in a layout path",
      { ...good, image: "oci:/tmp/x\u0000y" },
      /^image: must not contain control characters/,
    ],
    ["CRLF in the image", { ...good, image: "registry.example.com/app:1\r\nX: y" }, /^image: /],
    [
      "registry port 99999",
      { ...good, image: "registry.example.com:99999/app:1" },
      /^image: .*port 99999 .* is not 1-65535/,
    ],
    ["registry port 0", { ...good, image: "registry.example.com:0/app:1" }, /^image: .*port 0 /],
    ["sandbox port 99999", { ...good, network: true, ports: [99999] }, /^ports\[0\]: /],
    [
      "the same port twice",
      { ...good, network: true, ports: [80, 80] },
      /^ports: each port at most once/,
    ],
    ["shardUid set by the caller", { ...good, shardUid: "0".repeat(32) }, /shardUid/],
  ];
  for (const [name, body, mentions] of cases) {
    const r = await call("POST", "/v1/sandboxes", JSON.stringify(body));
    t.is(r.status, 400, name);
    t.regex(r.message, mentions, name);
  }
});

test("nodeSelector and tolerations are Kubernetes label keys and values, at most 32 each; a 400 names the entry and the rule", async (t) => {
  const { call } = await setup(t);
  const many = (n: number) => Array.from({ length: n }, (_, i) => `k${i}`);
  const keyRule = /a label key's name \(after any prefix\/\) must be 1-63 letters, digits/;
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["a space in a key", { nodeSelector: { "a b": "x" } }, /^nodeSelector\.a b: .*label key/],
    ["an empty key", { nodeSelector: { "": "x" } }, /^nodeSelector\.: /],
    ["a key name of 64", { nodeSelector: { ["a".repeat(64)]: "x" } }, keyRule],
    ["a key ending in '.'", { nodeSelector: { "zone.": "x" } }, keyRule],
    ["an empty name", { nodeSelector: { "shardworks.dev/": "x" } }, keyRule],
    [
      "an uppercase prefix",
      { nodeSelector: { "Shardworks.dev/microvm": "x" } },
      /^nodeSelector\.Shardworks\.dev\/microvm: a label key's prefix \(before '\/'\) must be a DNS subdomain/,
    ],
    ["an empty prefix", { nodeSelector: { "/microvm": "x" } }, /prefix .* DNS subdomain/],
    [
      "a prefix of 254",
      { nodeSelector: { [`${"a.".repeat(126)}ab/x`]: "x" } },
      /prefix .* at most 253/,
    ],
    ["two '/'", { nodeSelector: { "a/b/c": "x" } }, /^nodeSelector\.a\/b\/c: .*at most one '\/'/],
    ["a CRLF in a key", { nodeSelector: { "a\r\nb": "x" } }, /^nodeSelector\.a\r\nb: a label key/],
    [
      "a space in a value",
      { nodeSelector: { zone: "a b" } },
      /^nodeSelector\.zone: a label value must be empty or at most 63/,
    ],
    ["a value of 64", { nodeSelector: { zone: "a".repeat(64) } }, /^nodeSelector\.zone: /],
    ["a value starting with '-'", { nodeSelector: { zone: "-a" } }, /^nodeSelector\.zone: /],
    [
      "33 selector entries",
      { nodeSelector: Object.fromEntries(many(33).map((k) => [k, "x"])) },
      /^nodeSelector: at most 32 entries/,
    ],
    [
      "a toleration key with a space",
      { tolerations: [{ key: "a b" }] },
      /^tolerations\[0\]\.key: /,
    ],
    ["an empty toleration key", { tolerations: [{ key: "" }] }, /^tolerations\[0\]\.key: /],
    [
      "a toleration value of 64",
      { tolerations: [{ key: "zone", value: "a".repeat(64) }] },
      /^tolerations\[0\]\.value: a label value/,
    ],
    [
      "33 tolerations",
      { tolerations: many(33).map((key) => ({ key })) },
      /^tolerations: at most 32 entries/,
    ],
  ];
  for (const [name, fields, mentions] of cases) {
    const r = await call("POST", "/v1/sandboxes", JSON.stringify({ ...good, ...fields }));
    t.is(r.status, 400, name);
    t.regex(r.message, mentions, name);
  }
  const ok = await call(
    "POST",
    "/v1/sandboxes",
    JSON.stringify({
      ...good,
      nodeSelector: {
        "kubernetes.io/arch": "amd64",
        "shardworks.dev/microvm": "true",
        "A_b.c-D": "X_y.z-1",
        empty: "",
        [`${"a".repeat(63)}`]: "v".repeat(63),
        ...Object.fromEntries(many(27).map((k) => [k, "x"])),
      },
      tolerations: [
        { key: "shardworks.dev/microvm", value: "true" },
        { key: "dedicated" },
        ...many(30).map((key) => ({ key, value: "" })),
      ],
    }),
  );
  t.is(ok.status, 201, ok.message);
});

test("shard bodies: control characters in owner and fork destinations new URL rejects are a 400 naming the field", async (t) => {
  const { call } = await setup(t);
  for (const owner of ["ali\u0000ce", "alice\r\nX-Injected: 1", "tab\there", "del\u007f"]) {
    const r = await call("PUT", "/v1/shards/alice", JSON.stringify({ ...shard, owner }));
    t.is(r.status, 400, JSON.stringify(owner));
    t.regex(r.message, /^owner: must not contain control characters/);
  }
  for (const destination of [
    "1.2.3.4.5:80",
    "999.1.1.1:80",
    "a.1:80",
    "256.256.256.256:80",
    "1.2.3:80",
    "0x1g.1:80",
    "a..b:80",
    "-a.b:80",
    ".:80",
  ]) {
    const r = await call(
      "PUT",
      "/v1/shards/alice",
      JSON.stringify({ ...shard, forks: [{ service: "api", destination }] }),
    );
    t.is(r.status, 400, destination);
    t.regex(r.message, /^forks\[0\]\.destination: /, destination);
  }
  const ok = await call(
    "PUT",
    "/v1/shards/alice",
    JSON.stringify({ ...shard, forks: [{ service: "api", destination: "10.0.0.7:8080" }] }),
  );
  t.is(ok.status, 201);
});

test("duplicate JSON keys are refused, naming the key, on every JSON endpoint", async (t) => {
  const { call } = await setup(t);
  const cases: [string, string, string, RegExp][] = [
    [
      "POST",
      "/v1/sandboxes",
      '{"image":"registry.example.com/a:1","image":"oci:/etc","command":["true"]}',
      /^image: the key appears twice/,
    ],
    [
      "POST",
      "/v1/sandboxes",
      '{"image":"registry.example.com/a:1","command":["true"],"resources":{"cpuMillis":1,"cpuMillis":2,"memoryMiB":1}}',
      /^resources\.cpuMillis: the key appears twice/,
    ],
    [
      "PUT",
      "/v1/shards/alice",
      '{"routingKey":"key-alice","owner":"alice","owner":"mallory","forks":[]}',
      /^owner: the key appears twice/,
    ],
    [
      "POST",
      "/v1/sandboxes/some-id/migrate",
      '{"node":"a","node":"b"}',
      /^node: the key appears twice/,
    ],
  ];
  for (const [method, path, body, mentions] of cases) {
    const r = await call(method, path, body);
    t.is(r.status, 400, `${method} ${path} ${body}`);
    t.regex(r.message, mentions);
  }
});

test("a JSON endpoint refuses bodies not sent as application/json (UTF-8) with 415", async (t) => {
  const { call } = await setup(t);
  for (const [method, path, body] of [
    ["PUT", "/v1/shards/alice", JSON.stringify(shard)],
    ["POST", "/v1/sandboxes", JSON.stringify(good)],
    ["POST", "/v1/sandboxes/x/migrate", JSON.stringify({ node: "a" })],
  ] as const) {
    for (const type of [
      "text/plain",
      "application/x-www-form-urlencoded",
      "application/jsonx",
      null,
    ]) {
      const r = await call(method, path, body, type);
      t.is(r.status, 415, `${method} ${path} as ${type}`);
      t.regex(r.message, /content-type: application\/json/);
    }
    // A charset that is not UTF-8: the body would be read as UTF-8 all the same, while a proxy
    // or a log that honours the header reads other text.
    for (const type of [
      "application/json; charset=latin1",
      "application/json; charset=ISO-8859-1",
      "application/json; charset=utf-16",
      'application/json; charset="utf-16le"',
      "application/json; charset=utf-8; charset=latin1",
      "application/json; charset=",
    ]) {
      const r = await call(method, path, body, type);
      t.is(r.status, 415, `${method} ${path} as ${type}`);
      t.regex(
        r.message,
        /JSON bodies are UTF-8: send "content-type: application\/json" or "application\/json; charset=utf-8"/,
      );
    }
    for (const type of [
      "application/json; charset=utf-8",
      "application/json; charset=UTF-8",
      'application/json; charset="utf-8"',
      "Application/JSON;charset=Utf-8",
    ]) {
      t.not((await call(method, path, body, type)).status, 415, type);
    }
  }
});
