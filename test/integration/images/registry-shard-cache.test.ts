/**
 * What a shard's image can get from the node beyond its own registry (issue 13, review of B1):
 * nothing the platform fetched. Two network namespaces this test creates: the node's (A: the
 * probe, and an internal registry on its loopback) and another (B, at 1.2.3.5: a public address,
 * not the node's) holding the public registry. Names resolve through A's own /etc/hosts.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import test, { type ExecutionContext } from "ava";
import { runWithHosts } from "../../helpers/hosts-namespace";
import { buildBusyboxImage } from "../../helpers/images";

const HELPERS = join(__dirname, "..", "..", "helpers");

function ip(...args: string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.trim()}`);
}

/** A layout registry (test/helpers/oci-layout-registry.ts) in namespace `ns`; stopped at teardown. */
async function registryIn(t: ExecutionContext, ns: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(
    "ip",
    [
      "netns",
      "exec",
      ns,
      process.execPath,
      "--import",
      "tsx",
      join(HELPERS, "oci-layout-registry.ts"),
      ...args,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  t.teardown(() => void child.kill("SIGKILL"));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`registry ${args.join(" ")} did not start`)),
      30_000,
    );
    createInterface({ input: child.stdout }).once("line", () => {
      clearTimeout(timer);
      resolve();
    });
    child.once("exit", (code) => reject(new Error(`registry exited ${code}`)));
  });
  return child;
}

/** The layer digests of the manifest tagged `tag` in an OCI layout. */
function manifestOf(
  layout: string,
  tag: string,
): { layers: { digest: string; size: number; mediaType: string }[] } & Record<string, unknown> {
  const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as {
    manifests: { digest: string; annotations?: Record<string, string> }[];
  };
  const entry = index.manifests.find(
    (m) => m.annotations?.["org.opencontainers.image.ref.name"] === tag,
  );
  return JSON.parse(
    readFileSync(join(layout, "blobs", "sha256", entry!.digest.slice(7)), "utf8"),
  ) as ReturnType<typeof manifestOf>;
}

test("a shard's image gets nothing the platform fetched: no cached private layer, no platform warm pool, no redirect inward", async (t) => {
  const id = randomBytes(3).toString("hex");
  const [nsA, nsB] = [`sw-cacheA-${id}`, `sw-cacheB-${id}`];
  ip("netns", "add", nsA);
  t.teardown(() => spawnSync("ip", ["netns", "del", nsA]));
  ip("netns", "add", nsB);
  t.teardown(() => spawnSync("ip", ["netns", "del", nsB]));
  ip("link", "add", `swa${id}`, "type", "veth", "peer", "name", `swb${id}`);
  ip("link", "set", `swa${id}`, "netns", nsA);
  ip("link", "set", `swb${id}`, "netns", nsB);
  for (const [ns, dev, address] of [
    [nsA, `swa${id}`, "1.2.3.4/24"],
    [nsB, `swb${id}`, "1.2.3.5/24"],
  ] as const) {
    ip("-n", ns, "link", "set", "lo", "up");
    ip("-n", ns, "addr", "add", address, "dev", dev);
    ip("-n", ns, "link", "set", dev, "up");
  }

  const dir = mkdtempSync(join(tmpdir(), "sw-shard-cache-test-"));
  const privateLayout = join(dir, "private");
  const publicLayout = join(dir, "public");
  buildBusyboxImage(privateLayout, { tag: "app", layers: [{ files: { marker: "private\n" } }] });
  buildBusyboxImage(publicLayout, { tag: "app", layers: [{ files: { marker: "public\n" } }] });
  // The public registry's "evil" tag: its own manifest, listing the private image's layers (their
  // digests are not secrets), whose blobs the public registry does not have.
  const evil = JSON.stringify(manifestOf(privateLayout, "app"));
  const evilDigest = createHash("sha256").update(evil).digest("hex");
  writeFileSync(join(publicLayout, "blobs", "sha256", evilDigest), evil);
  const publicIndex = JSON.parse(readFileSync(join(publicLayout, "index.json"), "utf8")) as {
    manifests: unknown[];
  };
  publicIndex.manifests.push({
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    digest: `sha256:${evilDigest}`,
    size: evil.length,
    annotations: { "org.opencontainers.image.ref.name": "evil" },
  });
  writeFileSync(join(publicLayout, "index.json"), JSON.stringify(publicIndex));

  await registryIn(t, nsB, [publicLayout, "1.2.3.5", "5001"]);
  await registryIn(t, nsB, [publicLayout, "1.2.3.5", "5002", "http://internal.example.com:5001"]);
  await registryIn(t, nsA, [privateLayout, "127.0.0.1", "5001"]);

  const hosts = join(dir, "hosts");
  writeFileSync(
    hosts,
    "127.0.0.1 localhost\n1.2.3.5 registry.public.example.com\n127.0.0.1 internal.example.com\n",
  );
  const probe = await runWithHosts(hosts, join(HELPERS, "shard-cache-probe.ts"), {
    netns: nsA,
    env: { HOSTS_FILE: hosts, SHARDWORKS_LOG_FILE: join(dir, "node.log") },
    timeoutMs: 120_000,
  });
  t.is(probe.status, 0, probe.stderr);
  const result = JSON.parse(probe.stdout) as Record<string, string>;
  t.log(result);

  t.is(result.shardPublic, "public", "a shard pulls from a public registry");
  t.is(result.platformPrivate, "private", "the platform pulls from its internal registry");
  t.regex(
    result.shardEvil ?? "",
    /^error: .*blob sha256:[a-f0-9]+ not found/,
    "no private layer from the cache",
  );
  t.regex(
    result.shardRedirect ?? "",
    /refusing to connect to internal\.example\.com:5001: internal\.example\.com resolves to a loopback, private or reserved address/,
  );
  t.regex(
    result.platformRedirect ?? "",
    /refusing to connect to internal\.example\.com:5001/,
    "a redirect off the registry's host goes to public addresses only, for the platform too",
  );
  t.notRegex(result.shardRedirect ?? "", /127\.0\.0\.1/, "the node's DNS answer is not told");
  t.regex(
    readFileSync(join(dir, "node.log"), "utf8"),
    /"hostname":"internal\.example\.com","address":"127\.0\.0\.1".*refused a connection/,
    "the node's log says where it would have connected",
  );
  t.is(result.shardRunOutput, "public", "the shard's sandbox ran the public image");
  t.is(result.shardRunStart, "cold", "not the platform's warm launcher of the same name");
});
