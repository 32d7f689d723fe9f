/**
 * The image store against real OCI layouts (built from the host's busybox) and a real registry
 * (Debian's docker-registry on loopback, the image pushed with skopeo).
 */
import { spawn, spawnSync } from "node:child_process";
import { X509Certificate, createPrivateKey, randomBytes, sign } from "node:crypto";
import { createServer } from "node:http";
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { freePort } from "../../../runtime/lib/ports";
import { ImageError, ImageStore, parseImageReference } from "../../../runtime/node-agent/images";
import { makeCertificate } from "../../../scripts/pki";
import { buildBusyboxImage } from "../../helpers/images";

const root = mkdtempSync(join(tmpdir(), "sw-image-store-"));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

test("a layout image unpacks into a root filesystem with the image's files", async (t) => {
  const image = buildBusyboxImage(join(root, "plain"));
  const store = new ImageStore({ cacheDir: join(root, "cache-plain") });
  const prepared = await store.prepare(image);
  t.regex(prepared.manifestDigest, /^sha256:[a-f0-9]{64}$/);
  t.true(statSync(join(prepared.rootfs, "bin", "busybox")).isFile());
  t.true(lstatSync(join(prepared.rootfs, "bin", "sh")).isSymbolicLink());
  t.is(readFileSync(join(prepared.rootfs, "etc", "image-marker"), "utf8"), "busybox test image\n");
  t.deepEqual(prepared.config.env, ["PATH=/bin"]);
  t.true(
    prepared.rootfs.startsWith(join(root, "cache-plain")),
    "unpacked under the configured cache dir",
  );
});

test("concurrent prepares of one image unpack it once, and later prepares reuse it", async (t) => {
  const image = buildBusyboxImage(join(root, "concurrent"));
  const cacheDir = join(root, "cache-concurrent");
  const store = new ImageStore({ cacheDir });
  const results = await Promise.all([
    store.prepare(image),
    store.prepare(image),
    store.prepare(image),
  ]);
  t.is(new Set(results.map((r) => r.rootfs)).size, 1);
  t.deepEqual(
    readdirSync(join(cacheDir, "rootfs")),
    [results[0].manifestDigest.slice(7)],
    "one directory, no leftovers",
  );
  const inode = statSync(results[0].rootfs).ino;
  const again = await new ImageStore({ cacheDir }).prepare(image);
  t.is(
    statSync(again.rootfs).ino,
    inode,
    "a new store (e.g. after restart) reuses the unpacked rootfs",
  );
});

test("whiteouts in an upper layer delete files of lower layers; opaque dirs hide lower contents", async (t) => {
  const image = buildBusyboxImage(join(root, "layers"), {
    layers: [
      { files: { "etc/removed": "x", "data/a": "a", "data/b": "b", "keep/k": "k" } },
      { whiteouts: ["etc/removed"], opaque: ["data"], files: { "data/c": "c" } },
    ],
  });
  const prepared = await new ImageStore({ cacheDir: join(root, "cache-layers") }).prepare(image);
  t.false(existsSync(join(prepared.rootfs, "etc", "removed")));
  t.deepEqual(readdirSync(join(prepared.rootfs, "data")).sort(), ["c"]);
  t.is(readFileSync(join(prepared.rootfs, "keep", "k"), "utf8"), "k");
  t.false(
    existsSync(join(prepared.rootfs, "etc", ".wh.removed")),
    "whiteout markers are not unpacked",
  );
});

test("an image with more layers or more declared bytes than the node takes is refused before any layer is read", async (t) => {
  const image = buildBusyboxImage(join(root, "big"), { layers: [{ files: { a: "a" } }] });
  const layers = await t.throwsAsync(
    new ImageStore({ cacheDir: join(root, "cache-big"), maxLayers: 1 }).prepare(image),
    { instanceOf: ImageError },
  );
  t.regex(layers.message, /has 2 layers; at most 1 are taken \(squash the image\)/);
  const bytes = await t.throwsAsync(
    new ImageStore({ cacheDir: join(root, "cache-big"), maxImageBytes: 1000 }).prepare(image),
    { instanceOf: ImageError },
  );
  t.regex(bytes.message, /declares \d+ bytes of layers; at most 1000 are taken/);
  const config = await t.throwsAsync(
    new ImageStore({ cacheDir: join(root, "cache-big"), maxConfigBytes: 10 }).prepare(image),
    { instanceOf: ImageError },
  );
  t.regex(config.message, /declares a config of \d+ bytes; at most 10 are taken/);
  t.false(existsSync(join(root, "cache-big", "rootfs")), "nothing was unpacked");
  // Declared (compressed) sizes are no bound on what the files hold: counted before writing.
  const unpacked = await t.throwsAsync(
    new ImageStore({ cacheDir: join(root, "cache-bomb"), maxUnpackedBytes: 1000 }).prepare(image),
    { instanceOf: ImageError },
  );
  t.regex(unpacked.message, /the image's files unpack to more than 1000 bytes/);
  t.deepEqual(readdirSync(join(root, "cache-bomb", "rootfs")), [], "no root filesystem is left");
});

test("a corrupted layer is refused with a digest error", async (t) => {
  const layout = join(root, "corrupt");
  const image = buildBusyboxImage(layout);
  const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as {
    manifests: { digest: string }[];
  };
  const manifest = JSON.parse(
    readFileSync(join(layout, "blobs", "sha256", index.manifests[0]!.digest.slice(7)), "utf8"),
  ) as {
    layers: { digest: string }[];
  };
  writeFileSync(
    join(layout, "blobs", "sha256", manifest.layers[0]!.digest.slice(7)),
    "not the layer",
  );
  const error = await t.throwsAsync(
    new ImageStore({ cacheDir: join(root, "cache-corrupt") }).prepare(image),
    { instanceOf: ImageError },
  );
  t.is(error.code, "digest_mismatch");
  t.regex(error.message, /corrupt/);
});

test("a layout without the asked tag names the tags it has", async (t) => {
  const layout = join(root, "tags");
  buildBusyboxImage(layout, { tag: "one" });
  buildBusyboxImage(layout, { tag: "two" });
  const store = new ImageStore({ cacheDir: join(root, "cache-tags") });
  const error = await t.throwsAsync(store.prepare(`oci:${layout}:three`), {
    instanceOf: ImageError,
  });
  t.regex(error.message, /no image tagged "three" \(tags: one, two\)/);
  const untagged = await t.throwsAsync(store.prepare(`oci:${layout}`), { instanceOf: ImageError });
  t.regex(untagged.message, /several images; name one with a tag/);
});

test("bad references are refused with the problem and the fix", (t) => {
  const cases: [string, RegExp][] = [
    ["busybox", /must start with the registry host/],
    ["docker.io", /must start with the registry host/],
    ["busybox/sub:1", /"busybox" is not a registry host/],
    ["oci:relative/dir", /must be absolute/],
    ["127.0.0.1:5000/Upper/case:tag", /lowercase path components/],
    ["127.0.0.1:5000/repo@sha256:abc", /sha256:<64 lowercase hex>/],
    ["127.0.0.1:5000/repo:bad tag!", /tag "bad tag!"/],
  ];
  for (const [reference, message] of cases) {
    const error = t.throws(
      () => parseImageReference(reference),
      { instanceOf: ImageError },
      reference,
    );
    t.regex(error.message, message, reference);
    t.regex(error.message, /use "oci:|e\.g\./, `${reference}: the message shows the right form`);
  }
  t.deepEqual(parseImageReference("oci:/a:b/layout:v2"), {
    kind: "layout",
    path: "/a:b/layout",
    tag: "v2",
  });
  t.deepEqual(parseImageReference("localhost:5000/team/app"), {
    kind: "registry",
    registry: "localhost:5000",
    repository: "team/app",
    reference: "latest",
  });
});

/** A real docker-registry on a loopback port, with filesystem storage in a temp dir. */
async function startRegistry(
  dir: string,
  extraConfig = "",
): Promise<{ address: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const config = join(dir, "config.yml");
  writeFileSync(
    config,
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, "data")}\nhttp:\n  addr: 127.0.0.1:${port}\n${extraConfig}`,
  );
  const child = spawn("/usr/bin/docker-registry", ["serve", config], { stdio: "ignore" });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const stop = async () => {
    child.kill("SIGKILL");
    await exited;
  };
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const up = await fetch(`http://127.0.0.1:${port}/v2/`).then(
      (r) => r.ok || r.status === 401,
      () => false,
    );
    if (up) return { address: `127.0.0.1:${port}`, stop };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await stop();
  throw new Error("docker-registry did not start within 10 s");
}

test("a registry image is pulled over the distribution API (by tag and by digest) and verified", async (t) => {
  const dir = mkdtempSync(join(root, "registry-"));
  const registry = await startRegistry(dir);
  t.teardown(registry.stop);
  const layout = join(dir, "layout");
  buildBusyboxImage(layout, {
    tag: "v1",
    layers: [{ files: { "etc/pulled": "from the registry\n" } }],
  });
  const push = spawnSync(
    "skopeo",
    [
      "copy",
      "--quiet",
      "--dest-tls-verify=false",
      `oci:${layout}:v1`,
      `docker://${registry.address}/test/busybox:v1`,
    ],
    { encoding: "utf8" },
  );
  t.is(push.status, 0, push.stderr);

  const cacheDir = join(dir, "cache");
  const store = new ImageStore({ cacheDir });
  const byTag = await store.prepare(`${registry.address}/test/busybox:v1`);
  t.is(readFileSync(join(byTag.rootfs, "etc", "pulled"), "utf8"), "from the registry\n");
  t.true(statSync(join(byTag.rootfs, "bin", "busybox")).isFile());
  t.is(
    readdirSync(join(cacheDir, "blobs", "sha256")).length,
    3,
    "config and two layers cached as verified blobs",
  );

  const byDigest = await store.prepare(`${registry.address}/test/busybox@${byTag.manifestDigest}`);
  t.is(byDigest.rootfs, byTag.rootfs, "the same manifest digest is the same cached rootfs");

  const missing = await t.throwsAsync(store.prepare(`${registry.address}/test/busybox:nope`), {
    instanceOf: ImageError,
  });
  t.is(missing.code, "not_found");
  t.regex(missing.message, /manifest "nope" not found/);

  // The registry serves whatever its storage holds: corrupt a layer there, the store must refuse it.
  const layerHex = readdirSync(join(cacheDir, "blobs", "sha256")).find(
    (hex) => statSync(join(cacheDir, "blobs", "sha256", hex)).size > 100_000,
  );
  t.truthy(layerHex, "the busybox layer is among the cached blobs");
  const stored = join(
    dir,
    "data",
    "docker",
    "registry",
    "v2",
    "blobs",
    "sha256",
    layerHex!.slice(0, 2),
    layerHex!,
    "data",
  );
  const original = readFileSync(stored);
  original[original.length - 100] = original[original.length - 100]! ^ 0xff;
  writeFileSync(stored, original);
  const corrupt = await t.throwsAsync(
    new ImageStore({ cacheDir: join(dir, "cache-corrupt") }).prepare(
      `${registry.address}/test/busybox:v1`,
    ),
    {
      instanceOf: ImageError,
    },
  );
  t.is(corrupt.code, "digest_mismatch");
  t.regex(corrupt.message, /refusing it/);
  t.deepEqual(
    readdirSync(join(dir, "cache-corrupt", "blobs", "sha256")).filter((f) => f.includes(layerHex!)),
    [],
    "nothing of the bad blob is kept",
  );

  await registry.stop();
  const down = await t.throwsAsync(
    new ImageStore({ cacheDir: join(dir, "cache2") }).prepare(
      `${registry.address}/test/busybox:v1`,
    ),
    {
      instanceOf: ImageError,
    },
  );
  t.regex(down.message, /cannot reach .* is the registry running\?/);
});

/**
 * A token service for docker-registry's `auth: token` mode: checks Basic credentials and issues
 * RS256 JWTs carrying the signing certificate (x5c), which the registry checks against its
 * root bundle. Real JWTs, verified by the real registry.
 */
async function startTokenService(dir: string, user: string, password: string) {
  const key = join(dir, "token.key");
  const cert = join(dir, "token.pem");
  makeCertificate(dir, { key, cert, days: 1, subject: "/CN=shardworks-test-token" });
  const privateKey = createPrivateKey(readFileSync(key));
  const der = new X509Certificate(readFileSync(cert)).raw.toString("base64");
  const issued: string[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://token");
    const expected = `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
    if (req.headers.authorization !== expected) {
      res.writeHead(401).end();
      return;
    }
    const scope = url.searchParams.get("scope") ?? "";
    const [, name = "", actions = ""] = scope.split(":");
    const now = Math.floor(Date.now() / 1000);
    const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const header = b64({ alg: "RS256", typ: "JWT", x5c: [der] });
    const claims = b64({
      iss: "shardworks-test",
      sub: user,
      aud: url.searchParams.get("service"),
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(8).toString("hex"),
      access: scope ? [{ type: "repository", name, actions: actions.split(",") }] : [],
    });
    const signature = sign("sha256", Buffer.from(`${header}.${claims}`), privateKey).toString(
      "base64url",
    );
    issued.push(scope);
    res
      .writeHead(200, { "content-type": "application/json" })
      .end(JSON.stringify({ token: `${header}.${claims}.${signature}` }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return { realm: `http://127.0.0.1:${port}/token`, cert, issued, close: () => server.close() };
}

test("a registry that demands bearer tokens is pulled from with the configured credentials", async (t) => {
  const dir = mkdtempSync(join(root, "registry-auth-"));
  const tokens = await startTokenService(dir, "alice", "s3cret");
  t.teardown(tokens.close);
  const registry = await startRegistry(
    dir,
    `auth:\n  token:\n    realm: ${tokens.realm}\n    service: shardworks-registry\n    issuer: shardworks-test\n    rootcertbundle: ${tokens.cert}\n`,
  );
  t.teardown(registry.stop);
  const layout = join(dir, "layout");
  buildBusyboxImage(layout, { tag: "v1" });
  // Async: the token service answering skopeo runs in this process.
  const push = await run("skopeo", [
    "copy",
    "--quiet",
    "--dest-tls-verify=false",
    "--dest-creds",
    "alice:s3cret",
    `oci:${layout}:v1`,
    `docker://${registry.address}/private/busybox:v1`,
  ]);
  t.is(push.status, 0, push.stderr);
  const reference = `${registry.address}/private/busybox:v1`;

  const anonymous = await t.throwsAsync(
    new ImageStore({ cacheDir: join(dir, "anon") }).prepare(reference),
    { instanceOf: ImageError },
  );
  t.regex(anonymous.message, /token service .* answered HTTP 401; check the credentials/);

  const store = new ImageStore({
    cacheDir: join(dir, "cache"),
    credentials: { [registry.address]: { username: "alice", password: "s3cret" } },
  });
  const prepared = await store.prepare(reference);
  t.true(statSync(join(prepared.rootfs, "bin", "busybox")).isFile());
  t.true(
    tokens.issued.includes("repository:private/busybox:pull"),
    "the store asked for a pull token",
  );
});

/** Runs a command without blocking this process's event loop. */
async function run(
  command: string,
  args: string[],
): Promise<{ status: number | null; stderr: string }> {
  const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const status = await new Promise<number | null>((resolve) => child.once("close", resolve));
  return { status, stderr };
}
