/**
 * Blob downloads are bounded: a registry (a real HTTP server here) that sends more bytes than the
 * descriptor declares is cut off while streaming, and one that stalls hits the fetch timeout.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { once } from "node:events";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { ImageError, parseImageReference } from "../../../runtime/node-agent/images";
import { RegistryClient } from "../../../runtime/node-agent/images/registry";

const root = mkdtempSync(join(tmpdir(), "sw-registry-limits-"));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

async function registry(t: import("ava").ExecutionContext, serve: (res: ServerResponse) => void) {
  const open = new Set<ServerResponse>();
  const server = createServer((_req, res) => {
    open.add(res);
    serve(res);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.teardown(() => {
    for (const res of open) res.destroy();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  const ref = parseImageReference(`127.0.0.1:${port}/busybox:1`);
  if (ref.kind !== "registry") throw new Error("expected a registry reference");
  return ref;
}

const descriptor = {
  mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
  digest: `sha256:${"a".repeat(64)}`,
  size: 1024,
};

test("a blob longer than its descriptor is refused while streaming (an endless one too)", async (t) => {
  let sent = 0;
  const ref = await registry(t, (res) => {
    res.writeHead(200, { "content-type": "application/octet-stream" });
    const chunk = Buffer.alloc(64 * 1024, 1);
    const pump = (): void => {
      while (sent < 512 * 1024 * 1024 && res.write(chunk)) sent += chunk.length;
      if (sent < 512 * 1024 * 1024) res.once("drain", pump);
    };
    pump();
  });
  const path = join(root, "long", "blob");
  const error = await t.throwsAsync(new RegistryClient(ref).downloadBlob(descriptor, path), {
    instanceOf: ImageError,
  });
  t.regex(error?.message ?? "", /longer than its declared 1024 bytes/);
  t.true(sent < 64 * 1024 * 1024, `cut off early (the server got to send ${sent} bytes)`);
  t.false(existsSync(path));
  t.deepEqual(readdirSync(join(root, "long")), [], "no partial file is left");
});

test("a registry that stalls mid-blob hits the fetch timeout", async (t) => {
  const ref = await registry(t, (res) => {
    res.writeHead(200, { "content-type": "application/octet-stream" });
    res.write(Buffer.alloc(100)); // then nothing, forever
  });
  const started = Date.now();
  const error = await t.throwsAsync<ImageError>(
    new RegistryClient(ref, { fetchTimeoutMs: 1000 }).downloadBlob(
      descriptor,
      join(root, "stall", "blob"),
    ),
  );
  t.true(error instanceof ImageError, String(error));
  t.regex(error?.message ?? "", /did not arrive within 1000 ms/);
  t.true(Date.now() - started < 10_000, "gave up at the timeout, not never");
});

test("a registry's redirect to another host on the node's own network is refused, not followed", async (t) => {
  // The "victim": a service on another loopback address, which must see no request at all.
  let victimHits = 0;
  const victim = createServer((_req, res) => {
    victimHits += 1;
    res.end("{}");
  });
  victim.listen(0, "127.0.0.2");
  await once(victim, "listening");
  t.teardown(() => victim.close());
  const victimPort = (victim.address() as AddressInfo).port;
  const ref = await registry(t, (res) => {
    res.writeHead(307, { location: `http://127.0.0.2:${victimPort}/v2/x/manifests/1` });
    res.end();
  });
  const error = await t.throwsAsync(new RegistryClient(ref).manifest("1"), {
    instanceOf: ImageError,
  });
  t.regex(error?.message ?? "", /refusing a redirect or token realm to 127\.0\.0\.2/);
  t.is(victimHits, 0, "the redirect target was never contacted");
});

test("a registry's redirect on its own host is followed, and a redirect loop is cut off", async (t) => {
  let hits = 0;
  const ref = await registry(t, (res) => {
    hits += 1;
    res.writeHead(302, { location: `/v2/busybox/manifests/hop-${hits}` });
    res.end();
  });
  const error = await t.throwsAsync(new RegistryClient(ref).manifest("1"), {
    instanceOf: ImageError,
  });
  t.regex(error?.message ?? "", /more than 5 redirects/);
  t.is(hits, 6, "the first request and five redirects");
});

test("the platform's registry spelled another way (a long IPv6 form) is still its own host, reached on any address", async (t) => {
  let hits = 0;
  const server = createServer((_req, res) => {
    hits += 1;
    res.writeHead(404, { "content-type": "application/json" }).end('{"errors":[]}');
  });
  server.listen(0, "::1");
  await once(server, "listening");
  t.teardown(() => server.close());
  const registryName = `[0:0:0:0:0:0:0:1]:${(server.address() as AddressInfo).port}`;
  const ref = parseImageReference(`${registryName}/busybox:1`);
  if (ref.kind !== "registry") throw new Error("expected a registry reference");
  const client = new RegistryClient(ref, { insecureRegistries: [registryName] });
  const error = await t.throwsAsync(client.manifest("1"), { instanceOf: ImageError });
  t.regex(error?.message ?? "", /manifest "1" not found/);
  t.is(hits, 1);
});

test("a manifest or token answer larger than a manifest may be is cut off while streaming, not buffered whole", async (t) => {
  // 64 MiB at most (a hostile registry's would not end): the client must stop long before.
  const endless = (sent: { bytes: number }) => (res: ServerResponse) => {
    res.writeHead(200, { "content-type": "application/vnd.oci.image.manifest.v1+json" });
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const pump = (): void => {
      let open = true;
      while (open && sent.bytes < 64 * 1024 * 1024) {
        open = res.write(chunk);
        sent.bytes += chunk.length;
      }
      if (sent.bytes >= 64 * 1024 * 1024) res.end();
      else res.once("drain", pump);
    };
    pump();
  };
  const manifestSent = { bytes: 0 };
  const ref = await registry(t, endless(manifestSent));
  const error = await t.throwsAsync(new RegistryClient(ref).manifest("1"), {
    instanceOf: ImageError,
  });
  t.regex(error?.message ?? "", /manifest "1" is larger than 4194304 bytes/);
  t.true(manifestSent.bytes < 32 * 1024 * 1024, `cut off early (sent ${manifestSent.bytes} bytes)`);

  // A token service's answer is held to the same bound.
  const tokenSent = { bytes: 0 };
  const token = await registry(t, endless(tokenSent));
  const challenging = await registry(t, (res) => {
    res.writeHead(401, {
      "www-authenticate": `Bearer realm="http://127.0.0.1:${token.registry.split(":")[1]}/token"`,
    });
    res.end();
  });
  const refused = await t.throwsAsync(new RegistryClient(challenging).manifest("1"), {
    instanceOf: ImageError,
  });
  t.regex(refused?.message ?? "", /token service answer is larger than 4194304 bytes/);
  t.true(tokenSent.bytes < 32 * 1024 * 1024, `cut off early (sent ${tokenSent.bytes} bytes)`);
});

test("a platform pull follows a redirect to a private host it trusts (an internal blob store), never a shard's", async (t) => {
  let storeHits = 0;
  const store = createServer((_req, res) => {
    storeHits += 1;
    res.writeHead(200, { "content-type": "application/vnd.oci.image.manifest.v1+json" });
    res.end(JSON.stringify({ schemaVersion: 2 }));
  });
  store.listen(0, "127.0.0.2");
  await once(store, "listening");
  t.teardown(() => store.close());
  const storePort = (store.address() as AddressInfo).port;
  const ref = await registry(t, (res) => {
    res.writeHead(307, { location: `http://127.0.0.2:${storePort}/blobs/manifest-1` });
    res.end();
  });
  const body = await new RegistryClient(ref, { trustedHosts: ["127.0.0.2"] }).manifest("1").then(
    () => "fetched",
    (error: Error) => error.message,
  );
  t.notRegex(body, /refusing/, "the trusted host's redirect is followed");
  t.is(storeHits, 1);
  // A shard's pull never trusts it: public addresses only, whatever the platform trusts.
  const shard = await t.throwsAsync(
    new RegistryClient(ref, { trustedHosts: ["127.0.0.2"], publicOnly: true }).manifest("1"),
    { instanceOf: ImageError },
  );
  t.regex(shard?.message ?? "", /refusing to connect to 127\.0\.0\.1/);
  t.is(storeHits, 1, "the shard's pull reached nothing");
});
