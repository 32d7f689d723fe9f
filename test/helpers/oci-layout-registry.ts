/**
 * A read-only OCI distribution endpoint over an OCI image layout, for tests that need a registry
 * at an address Debian's docker-registry cannot be pushed to easily (inside a network namespace):
 * `GET /v2/<repo>/manifests/<tag|digest>` and `GET /v2/<repo>/blobs/<digest>`, any repository
 * name. With a redirect base, every request is answered 307 to `<base><path>` instead.
 *
 *   node --import tsx oci-layout-registry.ts <layout> <host> <port> [redirect-base]
 *
 * Prints `ready` once listening.
 */
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";

const [layout = "", host = "127.0.0.1", port = "0", redirect] = process.argv.slice(2);

interface IndexEntry {
  mediaType: string;
  digest: string;
  annotations?: Record<string, string>;
}

const blob = (digest: string): Buffer | undefined => {
  const path = join(layout, "blobs", "sha256", digest.replace(/^sha256:/, ""));
  return /^sha256:[a-f0-9]{64}$/.test(digest) && existsSync(path) ? readFileSync(path) : undefined;
};

createServer((req, res) => {
  const path = req.url ?? "/";
  if (redirect) {
    res.writeHead(307, { location: `${redirect}${path}` }).end();
    return;
  }
  const manifest = /^\/v2\/.+\/manifests\/([^/]+)$/.exec(path);
  const blobPath = /^\/v2\/.+\/blobs\/([^/]+)$/.exec(path);
  if (manifest?.[1]) {
    const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as {
      manifests: IndexEntry[];
    };
    const ref = decodeURIComponent(manifest[1]);
    const entry = index.manifests.find(
      (m) => m.digest === ref || m.annotations?.["org.opencontainers.image.ref.name"] === ref,
    );
    const bytes = entry ? blob(entry.digest) : undefined;
    if (entry && bytes) {
      res.writeHead(200, {
        "content-type": entry.mediaType,
        "docker-content-digest": entry.digest,
      });
      res.end(bytes);
      return;
    }
  } else if (blobPath?.[1]) {
    const bytes = blob(decodeURIComponent(blobPath[1]));
    if (bytes) {
      res.writeHead(200, { "content-type": "application/octet-stream" }).end(bytes);
      return;
    }
  }
  res.writeHead(404, { "content-type": "application/json" }).end('{"errors":[]}');
}).listen(Number(port), host, () => process.stdout.write("ready\n"));
