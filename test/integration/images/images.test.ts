/**
 * The image pipeline against the real things: Debian's docker-registry on loopback, umoci and
 * skopeo. Images are built, pushed, pulled back and run (bwrap as PID 1 from the unpacked rootfs);
 * digests are stable across builds; bad names and registries fail with errors naming the field.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { buildImage, ImageInputError, type ImageSpec } from "../../../scripts/images/build";
import {
  buildNodeAppImage,
  ensurePauseImage,
  ensureTestHttpImage,
} from "../../../scripts/images/catalog";
import { ensureRegistry, registryPort } from "../../../scripts/registry";
import { freePort } from "../../../runtime/lib/ports";
import { exitOf, pidOneOf, pullAndUnpack, runUnpacked } from "../../helpers/oci-run";

const ROOT = join(__dirname, "../../..");
const quiet = { progress: () => undefined };

/** `skopeo inspect` of a pushed reference (manifest digest and config), over plain HTTP. */
function inspect(ref: string): {
  Digest: string;
  Labels: Record<string, string> | null;
  Env: string[];
} {
  return JSON.parse(
    execFileSync("skopeo", ["inspect", "--tls-verify=false", `docker://${ref}`], {
      encoding: "utf8",
    }),
  ) as { Digest: string; Labels: Record<string, string> | null; Env: string[] };
}

function rawConfig(ref: string): {
  config: Record<string, unknown>;
  created: string;
} {
  return JSON.parse(
    execFileSync("skopeo", ["inspect", "--config", "--tls-verify=false", `docker://${ref}`], {
      encoding: "utf8",
    }),
  ) as { config: Record<string, unknown>; created: string };
}

/** A small image of busybox and one file whose content the test chooses. */
function probeSpec(marker: string): ImageSpec {
  return {
    name: "test/builder-probe",
    layers: [
      {
        name: "busybox",
        entries: [
          { type: "file", path: "/bin/busybox", from: "/bin/busybox" },
          { type: "symlink", path: "/bin/sh", target: "busybox" },
          { type: "symlink", path: "/bin/cat", target: "busybox" },
        ],
      },
      {
        name: "marker",
        entries: [
          { type: "content", path: "/etc/marker", content: `${marker}\n` },
          { type: "dir", path: "/data", mode: 0o700 },
        ],
      },
    ],
    config: {
      entrypoint: ["/bin/cat"],
      cmd: ["/etc/marker"],
      env: { PATH: "/bin", MARKER: marker },
      workdir: "/data",
      user: "1000:1000",
      exposedPorts: [8080, "9090/udp"],
      labels: { "test.marker": marker },
    },
  };
}

test("the registry answers /v2/ on loopback, and a second ensureRegistry finds the same one", async (t) => {
  const first = await ensureRegistry();
  const second = await ensureRegistry();
  t.is(first.host, `localhost:${registryPort()}`);
  t.is(second.url, first.url);
  t.true(first.url.startsWith("http://127.0.0.1:"));
  const response = await fetch(`${first.url}/v2/`);
  t.is(response.status, 200);
  t.is(response.headers.get("docker-distribution-api-version"), "registry/2.0");
});

test("a bad SHARDWORKS_REGISTRY_PORT is refused with the variable and the fix", (t) => {
  const error = t.throws(() => registryPort({ SHARDWORKS_REGISTRY_PORT: "http" }));
  t.regex(
    error.message,
    /SHARDWORKS_REGISTRY_PORT="http" must be a number; set it to a free TCP port/,
  );
  t.regex(
    t.throws(() => registryPort({ SHARDWORKS_REGISTRY_PORT: "80" })).message,
    /must be at least 1024/,
  );
  t.is(registryPort({}), 5055);
});

test("build → push → inspect: the config is the spec's, the digest is stable, the cache answers, a change rebuilds", async (t) => {
  const marker = "probe-a";
  const first = await buildImage(probeSpec(marker), { ...quiet, force: true });
  const again = await buildImage(probeSpec(marker), { ...quiet, force: true });
  t.false(again.cached);
  t.is(again.digest, first.digest, "the same inputs gave another digest");
  const cached = await buildImage(probeSpec(marker), quiet);
  t.true(cached.cached);
  t.is(cached.ref, first.ref);
  t.regex(first.ref, /^localhost:\d+\/shardworks\/test\/builder-probe@sha256:[0-9a-f]{64}$/);

  const pulled = inspect(first.ref);
  t.is(pulled.Digest, first.digest);
  t.is(pulled.Labels?.["test.marker"], marker);
  const config = rawConfig(first.ref);
  t.is(config.created, "1970-01-01T00:00:00Z");
  t.deepEqual(config.config.Entrypoint, ["/bin/cat"]);
  t.deepEqual(config.config.Cmd, ["/etc/marker"]);
  t.deepEqual(config.config.Env, ["MARKER=probe-a", "PATH=/bin"]);
  t.is(config.config.User, "1000:1000");
  t.is(config.config.WorkingDir, "/data");
  t.deepEqual(Object.keys(config.config.ExposedPorts as object).sort(), ["8080/tcp", "9090/udp"]);

  // The file really is in the image: run it.
  const unpacked = pullAndUnpack(first.ref);
  t.teardown(unpacked.remove);
  const run = runUnpacked(unpacked);
  let out = "";
  run.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  t.is(await exitOf(run), 0);
  t.is(out, "probe-a\n");

  // A marker no earlier run has built: the builder's cache outlives test runs (as it should).
  const changed = await buildImage(probeSpec(`probe-${randomBytes(4).toString("hex")}`), quiet);
  t.false(changed.cached);
  t.not(changed.digest, first.digest);
  // The unchanged busybox layer is shared: same blob, so a pull of the new image skips it.
  const layers = (ref: string) =>
    (
      JSON.parse(
        execFileSync("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${ref}`], {
          encoding: "utf8",
        }),
      ) as { layers: { digest: string }[] }
    ).layers.map((l) => l.digest);
  const [before, after] = [layers(first.ref), layers(changed.ref)];
  t.is(after[0], before[0]);
  t.not(after[1], before[1]);
});

test("any registry a platform team names: --registry host/prefix pushes there, pinned by digest", async (t) => {
  const registry = await ensureRegistry();
  const elsewhere = await buildImage(probeSpec("probe-a"), {
    ...quiet,
    target: { registry: `${registry.host}/platform-team`, tlsVerify: false },
  });
  t.regex(elsewhere.ref, /\/platform-team\/test\/builder-probe@sha256:/);
  t.is(inspect(elsewhere.ref).Digest, elsewhere.digest);
});

test("bad names and registries fail before any build, naming the field and the fix", async (t) => {
  const bad = { ...probeSpec("x"), name: "Shop/Front End" };
  const nameError = await t.throwsAsync(buildImage(bad, quiet), { instanceOf: ImageInputError });
  t.regex(nameError.message, /^image\.name: must be lowercase letters, digits/);
  const registryError = await t.throwsAsync(
    buildImage(probeSpec("x"), { ...quiet, target: { registry: "https://registry.example.com" } }),
    { instanceOf: ImageInputError },
  );
  t.regex(registryError.message, /^target\.registry: must be host\[:port\]\[\/prefix\]/);
  const userError = await t.throwsAsync(
    buildImage({ ...probeSpec("x"), config: { user: "nobody" } }, quiet),
    { instanceOf: ImageInputError },
  );
  t.regex(userError.message, /image\.config\.user: must be numeric uid\[:gid\]/);
  const pathError = await t.throwsAsync(
    buildImage(
      { name: "test/x", layers: [{ name: "l", entries: [{ type: "dir", path: "relative/dir" }] }] },
      quiet,
    ),
    { instanceOf: ImageInputError },
  );
  t.regex(pathError.message, /image\.layers\.0\.entries\.0\.path: image paths are absolute/);
});

test("the CLI refuses an unknown image and a bad --registry with exit 2 and one line", (t) => {
  const cli = (args: string[]) =>
    spawnSync("node", ["--import", "tsx", join(ROOT, "scripts/images/main.ts"), "build", ...args], {
      encoding: "utf8",
      cwd: ROOT,
    });
  const unknown = cli(["nginx"]);
  t.is(unknown.status, 2);
  t.is(
    unknown.stderr.trim(),
    'images: error: unknown image "nginx"; build one of: pause, test-http, runtime, gateway, etcd, all, or app:<dir>',
  );
  const registry = cli(["pause", "--registry", "http://x"]);
  t.is(registry.status, 2);
  t.regex(registry.stderr, /target\.registry: must be host\[:port\]\[\/prefix\]/);
  t.notRegex(registry.stderr, /\n\s+at /, "a stack trace was printed");
});

test("the pause image runs as PID 1, stays up, and exits 0 on SIGTERM", async (t) => {
  const pause = await ensurePauseImage(quiet);
  t.regex(pause.ref, /\/shardworks\/pause@sha256:/);
  const unpacked = pullAndUnpack(pause.ref);
  t.teardown(unpacked.remove);
  const bwrap = runUnpacked(unpacked);
  t.teardown(() => bwrap.kill("SIGKILL"));
  const pid1 = await pidOneOf(bwrap);
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.is(bwrap.exitCode, null, "pause exited on its own");
  // As PID 1 a signal without a handler is dropped: this checks the handler is there.
  process.kill(pid1, "SIGTERM");
  t.is(await exitOf(bwrap), 0);
});

test("the test HTTP image serves its message and the request's headers, and stops on SIGTERM", async (t) => {
  const image = await ensureTestHttpImage(quiet);
  const unpacked = pullAndUnpack(image.ref);
  t.teardown(unpacked.remove);
  const port = await freePort();
  const bwrap = runUnpacked(unpacked, {
    env: { TEST_HTTP_PORT: String(port), TEST_HTTP_MESSAGE: "hello from the test pod" },
  });
  t.teardown(() => bwrap.kill("SIGKILL"));
  const pid1 = await pidOneOf(bwrap);
  let body = "";
  for (let i = 0; i < 100 && body === ""; i++) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/`, {
        headers: { baggage: "shardworks.key=alice" },
      });
      body = await response.text();
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  t.regex(body, /^hello from the test pod\nimage: shardworks\/test-http\nversion: 1\n/);
  t.regex(body, /^header BAGGAGE: shardworks\.key=alice$/m);
  t.is(await (await fetch(`http://127.0.0.1:${port}/healthz`)).text(), "ok\n");
  process.kill(pid1, "SIGTERM");
  // init forwards SIGTERM to httpd and exits with its status (killed by 15 → 143).
  t.is(await exitOf(bwrap), 143);
});

test("a Node.js service directory becomes an image; a change to it rebuilds only its top layer", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sw-node-app-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const write = (greeting: string) => {
    writeFileSync(
      join(dir, "package.json"),
      JSON.stringify({
        name: "probe",
        version: "1.0.0",
        main: "index.js",
        dependencies: { zod: "*" },
      }),
    );
    writeFileSync(
      join(dir, "index.js"),
      `const { z } = require("zod");\nconsole.log(z.string().parse(${JSON.stringify(greeting)}));\n`,
    );
  };
  write("first");
  const first = await buildNodeAppImage(dir, { ...quiet, name: "test/node-app", projectDir: ROOT });
  const unpacked = pullAndUnpack(first.ref);
  t.teardown(unpacked.remove);
  const run = runUnpacked(unpacked);
  let out = "";
  run.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  t.is(await exitOf(run), 0);
  t.is(out, "first\n");

  write("second");
  const second = await buildNodeAppImage(dir, {
    ...quiet,
    name: "test/node-app",
    projectDir: ROOT,
  });
  t.not(second.digest, first.digest);
  const layers = (ref: string) =>
    (
      JSON.parse(
        execFileSync("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${ref}`], {
          encoding: "utf8",
        }),
      ) as { layers: { digest: string }[] }
    ).layers.map((l) => l.digest);
  const [a, b] = [layers(first.ref), layers(second.ref)];
  t.deepEqual(b.slice(0, 2), a.slice(0, 2), "the node and node_modules layers changed");
  t.not(b[2], a[2]);
});
