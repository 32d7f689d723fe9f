/**
 * Issue 13, defect 7: while etcd is away every API call answered 500 "internal error". It is a 503
 * with `Retry-After` and an error that names the store, so clients know to retry; and the API
 * serves again once etcd is back.
 */
import test from "ava";
import {
  PLATFORM_TOKEN,
  restartableEtcdFor,
  schedulerFor,
  tempDirFor,
} from "../../helpers/runtime";

test("etcd down: sandbox, node and shard calls answer 503 store_unavailable with Retry-After, /healthz 503 with Retry-After; back up: 2xx", async (t) => {
  const dir = await tempDirFor(t, "sw-store-outage-");
  const etcd = await restartableEtcdFor(t, dir);
  const scheduler = await schedulerFor(t, etcd.current(), { placer: false });
  const call = (path: string, init: RequestInit = {}) =>
    fetch(`${scheduler.url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${PLATFORM_TOKEN}`, "content-type": "application/json" },
    });
  const calls: [string, RequestInit][] = [
    ["/v1/sandboxes", {}],
    ["/v1/sandboxes/some-id", {}],
    [
      "/v1/sandboxes",
      { method: "POST", body: JSON.stringify({ image: "oci:/x:1", command: ["true"] }) },
    ],
    ["/v1/nodes", {}],
    ["/v1/shards", {}],
  ];
  t.is((await call("/v1/sandboxes")).status, 200);
  await etcd.kill();
  // The first call meets the refused connection, later ones etcd3's open circuit breaker: both
  // are "unavailable".
  for (const [path, init] of [...calls, ...calls]) {
    const response = await call(path, init);
    const body = (await response.json()) as { error: { code: string; message: string } };
    t.is(response.status, 503, `${init.method ?? "GET"} ${path}: ${JSON.stringify(body)}`);
    t.is(response.headers.get("retry-after"), "2");
    t.is(body.error.code, "store_unavailable");
    t.regex(body.error.message, /state store \(etcd\) is unavailable.*retry in 2 s/);
  }
  // /healthz (no token) says the same: 503 with the same Retry-After, so a probe or a rollout
  // gate backs off like any client.
  const health = await fetch(`${scheduler.url}/healthz`);
  const healthBody = (await health.json()) as { error: { code: string; message: string } };
  t.is(health.status, 503);
  t.is(health.headers.get("retry-after"), "2");
  t.is(healthBody.error.code, "etcd_unavailable");
  t.regex(healthBody.error.message, /retry in 2 s/);
  // A shard token is checked against etcd too: 503, not 401 or 500.
  const shard = await fetch(`${scheduler.url}/v1/sandboxes`, {
    headers: { authorization: "Bearer demo.0123456789abcdef" },
  });
  t.is(shard.status, 503);
  await etcd.restart();
  const deadline = Date.now() + 30_000;
  let status = 0;
  while (Date.now() < deadline && status !== 200) {
    status = (await call("/v1/sandboxes")).status;
    if (status !== 200) {
      t.is(status, 503, "only 503 while the client reconnects");
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  t.is(status, 200, "serves again once etcd is back");
});
