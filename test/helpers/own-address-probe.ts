/**
 * Run by registry-own-address.test.ts in a network namespace where this node holds the public
 * address 1.2.3.4 (and /etc/hosts maps `mapped.example.com` to `::ffff:1.2.3.4`, its IPv4-mapped
 * form). Serves a "registry" on every address of the node (dual-stack, so the mapped form reaches
 * it too), pulls a shard's image from this node's own address spelled three ways and prints one
 * JSON object: what each pull answered and how many requests reached the server.
 */
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ImageStore } from "../../runtime/node-agent/images";

async function main(): Promise<void> {
  let requests = 0;
  const server = createServer((_req, res) => {
    requests += 1;
    res.writeHead(404, { "content-type": "application/json" }).end('{"errors":[]}');
  });
  server.listen(0, "::");
  await once(server, "listening");
  const port = (server.address() as AddressInfo).port;
  const registries = [`1.2.3.4:${port}`, `[::ffff:102:304]:${port}`, `mapped.example.com:${port}`];
  const store = new ImageStore({
    cacheDir: mkdtempSync(join(tmpdir(), "sw-own-address-")),
    insecureRegistries: registries,
  });
  const result: Record<string, string | number> = {};
  for (const registry of registries) {
    try {
      await store.prepare(`${registry}/app:1`, "public");
      result[registry] = "pulled";
    } catch (error) {
      result[registry] = (error as Error).message;
    }
  }
  result.requests = requests;
  server.close();
  process.stdout.write(JSON.stringify(result));
}

void main();
