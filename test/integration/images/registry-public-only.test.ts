/**
 * A shard's image is fetched only from public addresses, judged on the address a name resolves
 * to when the node connects (issue 13, B1): a public-looking registry name whose DNS answer is
 * loopback must not make the node connect into its own network. Real name resolution: the pulls
 * run in a mount namespace whose /etc/hosts maps the name to 127.0.0.1; the "registry" is a
 * loopback HTTP server that counts the requests reaching it.
 */
import { once } from "node:events";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { runWithHosts } from "../../helpers/hosts-namespace";

const PROBE = join(__dirname, "..", "..", "helpers", "rebind-probe.ts");

test("a shard's image is refused when its registry name resolves to loopback; the platform's is fetched", async (t) => {
  let requests = 0;
  const registry = createServer((_req, res) => {
    requests += 1;
    res.writeHead(404, { "content-type": "application/json" }).end('{"errors":[]}');
  });
  registry.listen(0, "127.0.0.1");
  await once(registry, "listening");
  t.teardown(() => registry.close());
  const port = (registry.address() as AddressInfo).port;

  const dir = mkdtempSync(join(tmpdir(), "sw-rebind-test-"));
  const hosts = join(dir, "hosts");
  writeFileSync(hosts, "127.0.0.1 localhost\n127.0.0.1 registry.rebind.example.com\n");
  const probe = await runWithHosts(hosts, PROBE, {
    env: { PROBE_PORT: String(port), SHARDWORKS_LOG_FILE: join(dir, "node.log") },
    timeoutMs: 60_000,
  });
  if (probe.status !== 0) throw new Error(`the probe failed: ${probe.stderr}`);
  const { stdout } = probe;
  const result = JSON.parse(stdout) as Record<string, string>;
  t.log(result);

  const name = `registry.rebind.example.com:${port}`;
  const refused = new RegExp(
    `refusing to connect to ${name}: registry.rebind.example.com resolves to a loopback, private or reserved address; only public registries are reached for it`,
  );
  t.regex(result.shard ?? "", refused, "the image store, shard access");
  t.regex(result.driverShard ?? "", refused, "the process driver running a shard's sandbox");
  t.regex(result.shardLiteral ?? "", /refusing to connect to 127\.0\.0\.1, a loopback/);
  t.regex(result.shardLayout ?? "", /layout path on the node is for the platform's sandboxes/);
  // The same name, for the platform: resolved and connected to (the server answers 404).
  t.regex(result.platform ?? "", /not found/);
  t.regex(result.driverPlatform ?? "", /not found/);
  t.is(requests, 2, "only the two platform pulls reached the server");
});
