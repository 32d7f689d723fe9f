/**
 * Specs a node would refuse (or a parser would crash on) are refused at the API's edge with a
 * 400 naming the field (issue 13, defects 6 and 10): bad env names, control characters in
 * `image` and `owner`, registry port 99999, fork destinations `new URL` rejects, duplicate JSON
 * keys, and bodies that are not `application/json`. Real etcd and scheduler, loopback only.
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

test("a JSON endpoint refuses bodies not sent as application/json with 415", async (t) => {
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
    t.not((await call(method, path, body, "application/json; charset=utf-8")).status, 415);
  }
});
