/** Helpers for tests that talk to a real Kubernetes API server through `@kubernetes/client-node`. */
import * as k8s from "@kubernetes/client-node";
import { request } from "node:https";
import { z } from "zod";

/** The HTTP status a client-node call failed with (or 200 when it succeeded). */
export async function statusOf(call: () => Promise<unknown>): Promise<number> {
  try {
    await call();
    return 200;
  } catch (error) {
    if (error instanceof k8s.ApiException) return error.code;
    throw error;
  }
}

/** GET a path of the API server as the kubeconfig's user; the parsed JSON body. */
export async function getJson(config: k8s.KubeConfig, path: string): Promise<unknown> {
  const server = config.getCurrentCluster()?.server;
  if (server === undefined) throw new Error("the kubeconfig has no current cluster");
  const url = new URL(path, server);
  const options: import("node:https").RequestOptions = { method: "GET" };
  await config.applyToHTTPSOptions(options);
  return new Promise((resolve, reject) => {
    const req = request(url, options, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => {
        if (response.statusCode !== 200) {
          reject(new Error(`GET ${path}: ${response.statusCode} ${body.slice(0, 300)}`));
        } else resolve(JSON.parse(body) as unknown);
      });
    });
    req.on("error", reject);
    req.end();
  });
}

const ApiVersions = z.object({ versions: z.array(z.string()) });
const ApiGroups = z.object({
  groups: z.array(
    z.object({ preferredVersion: z.object({ groupVersion: z.string() }).optional() }),
  ),
});
const ApiResources = z.object({
  resources: z.array(
    z.object({
      name: z.string(),
      kind: z.string(),
      namespaced: z.boolean(),
      verbs: z.array(z.string()),
    }),
  ),
});
const ObjectList = z.object({
  items: z.array(
    z.object({
      metadata: z.object({
        name: z.string(),
        namespace: z.string().optional(),
        labels: z.record(z.string(), z.string()).optional(),
      }),
    }),
  ),
});

/** One kind the API server serves, from discovery. */
export interface ServedKind {
  /** `v1` or `<group>/<version>` (the group's preferred version). */
  readonly groupVersion: string;
  readonly kind: string;
  /** The plural resource name, e.g. `deployments`. */
  readonly resource: string;
  readonly namespaced: boolean;
}

/** One object in the cluster. */
export interface ClusterObject {
  readonly kind: ServedKind;
  readonly name: string;
  readonly namespace?: string;
  readonly labels: Readonly<Record<string, string>>;
}

/**
 * Every kind the API server serves with the `list` verb, from discovery (`/api`, `/apis`, and each
 * group's preferred version), namespaced and cluster-scoped alike; subresources excluded.
 */
export async function servedKinds(config: k8s.KubeConfig): Promise<ServedKind[]> {
  const groupVersions = [
    ...ApiVersions.parse(await getJson(config, "/api")).versions,
    ...ApiGroups.parse(await getJson(config, "/apis")).groups.flatMap((g) =>
      g.preferredVersion ? [g.preferredVersion.groupVersion] : [],
    ),
  ];
  const kinds: ServedKind[] = [];
  for (const groupVersion of groupVersions) {
    const path = groupVersion.includes("/") ? `/apis/${groupVersion}` : `/api/${groupVersion}`;
    const { resources } = ApiResources.parse(await getJson(config, path));
    for (const r of resources) {
      if (r.name.includes("/") || !r.verbs.includes("list")) continue;
      kinds.push({ groupVersion, kind: r.kind, resource: r.name, namespaced: r.namespaced });
    }
  }
  return kinds;
}

/** Every object of every served kind (see {@link servedKinds}), in all namespaces. */
export async function allObjects(config: k8s.KubeConfig): Promise<{
  kinds: ServedKind[];
  objects: ClusterObject[];
}> {
  const kinds = await servedKinds(config);
  const objects: ClusterObject[] = [];
  for (const kind of kinds) {
    const base = kind.groupVersion.includes("/")
      ? `/apis/${kind.groupVersion}`
      : `/api/${kind.groupVersion}`;
    const { items } = ObjectList.parse(await getJson(config, `${base}/${kind.resource}`));
    for (const { metadata } of items) {
      objects.push({
        kind,
        name: metadata.name,
        namespace: metadata.namespace,
        labels: metadata.labels ?? {},
      });
    }
  }
  return { kinds, objects };
}

/** `apps/v1 Deployment shard-alice/checkout`: one line per object, for assertions and logs. */
export function describeObject(object: ClusterObject): string {
  const where = object.namespace === undefined ? "" : `${object.namespace}/`;
  return `${object.kind.groupVersion} ${object.kind.kind} ${where}${object.name}`;
}

/**
 * Everything of shard `shardName` left in the cluster, over every served kind: objects in its
 * namespace `shard-<name>` (the namespace too), objects anywhere labelled
 * `shardworks.dev/shard=<name>`, and objects anywhere whose name contains `shard-<name>`.
 * Also returns how many kinds were listed, so a caller can check the listing was not empty.
 */
export async function objectsOfShard(
  config: k8s.KubeConfig,
  shardName: string,
): Promise<{ kinds: number; objects: string[] }> {
  const namespace = `shard-${shardName}`;
  const { kinds, objects } = await allObjects(config);
  const ofShard = objects.filter(
    (o) =>
      o.namespace === namespace ||
      o.labels["shardworks.dev/shard"] === shardName ||
      o.name.includes(namespace),
  );
  return { kinds: kinds.length, objects: ofShard.map(describeObject).sort() };
}
