/**
 * Run by registry-shard-cache.test.ts in a network namespace where `registry.public.example.com`
 * (1.2.3.5, another namespace: a public address, not this node's) serves the public image and
 * `internal.example.com` (127.0.0.1, this node) the private one; `swap.example.com` points at
 * either, as `$HOSTS_FILE` (this namespace's /etc/hosts) says when each step runs. Prints one
 * JSON object: what each step answered.
 */
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sandboxSpecSchema, type RegistryAccess } from "../../contract/model";
import { createProcessDriver } from "../../runtime/node-agent/drivers/process";
import { ImageStore } from "../../runtime/node-agent/images";

const HOSTS = process.env.HOSTS_FILE ?? "";
const registries = [
  "registry.public.example.com:5001",
  "registry.public.example.com:5002",
  "internal.example.com:5001",
  "swap.example.com:5001",
];
const cacheDir = mkdtempSync(join(tmpdir(), "sw-shard-cache-"));
const options = { cacheDir, insecureRegistries: registries };
const store = new ImageStore(options);

/** Point `swap.example.com` at `address`. */
function swapTo(address: string): void {
  const lines = readFileSync(HOSTS, "utf8")
    .split("\n")
    .filter((l) => !l.includes("swap.example.com"));
  writeFileSync(HOSTS, [...lines.filter(Boolean), `${address} swap.example.com`, ""].join("\n"));
}

async function marker(image: string, access: RegistryAccess): Promise<string> {
  try {
    const prepared = await store.prepare(image, access);
    return readFileSync(join(prepared.rootfs, "marker"), "utf8").trim();
  } catch (error) {
    return `error: ${(error as Error).message}`;
  }
}

async function main(): Promise<void> {
  const result: Record<string, string> = {};
  result.shardPublic = await marker("registry.public.example.com:5001/shop/app:app", "public");
  result.platformPrivate = await marker("internal.example.com:5001/shop/app:app", "any");
  // A public manifest naming the private layer's digest: not served from the node's cache.
  result.shardEvil = await marker("registry.public.example.com:5001/shop/app:evil", "public");
  // The public registry on :5002 redirects everything to internal.example.com:5001.
  result.shardRedirect = await marker("registry.public.example.com:5002/shop/app:app", "public");
  result.platformRedirect = await marker("registry.public.example.com:5002/shop/app:app", "any");

  // The platform warms an image by name while the name points at the internal registry; a
  // shard's sandbox of the same name, once the name points at the public one, must not get it.
  const driver = createProcessDriver({ imageStore: options });
  const image = "swap.example.com:5001/shop/app:app";
  swapTo("127.0.0.1");
  await driver.warm(image, 1, "any");
  swapTo("1.2.3.5");
  const logFile = join(cacheDir, "shard.log");
  const sandbox = await driver.run({
    id: "shard-run",
    spec: sandboxSpecSchema.parse({
      image,
      command: ["cat", "/marker"],
      registryAccess: "public",
    }),
    workDir: mkdtempSync(join(cacheDir, "work-")),
    logFile,
  });
  await sandbox.exit;
  result.shardRunStart = sandbox.start;
  result.shardRunOutput = readFileSync(logFile, "utf8").trim();
  await driver.close();
  process.stdout.write(JSON.stringify(result));
}

void main();
