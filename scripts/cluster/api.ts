/** Plain HTTPS calls to a cluster's API server as its admin (no client library: start-up code). */
import { request } from "node:https";

/** What {@link clusterRequest} needs of a cluster. */
export interface ApiTarget {
  readonly server: string;
  readonly caCert: string;
  readonly adminToken: string;
}

/** A response of {@link clusterRequest}. */
export interface ClusterResponse {
  status: number;
  /** The JSON body (`{ text }` when it is not JSON). */
  body: Record<string, unknown>;
  /** `Warning` headers (Pod Security admission, deprecations). */
  warnings: string[];
}

/** Send one request to a cluster's API server as its admin (tests use it to see `Warning`s). */
export function clusterRequest(
  cluster: ApiTarget,
  method: string,
  path: string,
  body?: unknown,
): Promise<ClusterResponse> {
  return new Promise((resolveRequest, reject) => {
    const req = request(
      `${cluster.server}${path}`,
      {
        method,
        ca: cluster.caCert,
        timeout: 10_000,
        headers: {
          authorization: `Bearer ${cluster.adminToken}`,
          "content-type": "application/json",
        },
      },
      (res) => {
        let text = "";
        res.on("data", (chunk: Buffer) => (text += chunk.toString()));
        res.on("end", () => {
          let parsed: Record<string, unknown>;
          try {
            parsed = JSON.parse(text) as Record<string, unknown>;
          } catch {
            parsed = { text };
          }
          const warning = res.headers["warning"];
          resolveRequest({
            status: res.statusCode ?? 0,
            body: parsed,
            // Several warnings arrive as one comma-joined header: `299 - "a", 299 - "b"`.
            warnings: warning === undefined ? [] : String(warning).split(/,(?=\s*\d{3} )/),
          });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on("error", reject);
    if (body !== undefined) req.write(JSON.stringify(body));
    req.end();
  });
}

/** Create an object (POST to `collection`); an existing one is left as it is. */
export async function createObject(
  cluster: ApiTarget,
  collection: string,
  object: Record<string, unknown>,
): Promise<void> {
  const res = await clusterRequest(cluster, "POST", collection, object);
  if (res.status !== 201 && res.status !== 200 && res.status !== 409) {
    const message =
      typeof res.body.message === "string" ? res.body.message : JSON.stringify(res.body);
    throw new Error(`creating ${collection}: ${res.status} ${message}`);
  }
}
