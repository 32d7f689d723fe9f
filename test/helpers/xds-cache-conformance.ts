/**
 * The conformance suite every xDS cache behind the server's `ConfigWatcher` boundary must pass
 * (like Hono's `router/common.case.test.ts`): run it with a factory for each implementation.
 */
import test from "ava";
import type { ShardRecord } from "../../contract/model";
import { translate } from "../../runtime/routing/translate";
import {
  PUSH_ORDER,
  Snapshot,
  TypeUrl,
  type ConfigWatcher,
  type WatchRequest,
  type WatchResponse,
} from "../../runtime/routing/xds";

/** A cache the suite can drive: the watcher boundary plus the one producer call. */
export interface ProducerCache extends ConfigWatcher {
  setSnapshot(key: string, snapshot: Snapshot): void;
}

const now = "2026-01-01T00:00:00.000Z";
function snapshot(shards: string[]): Snapshot {
  return new Snapshot(
    translate({
      baseline: [{ name: "api", destination: "127.0.0.1:5000" }],
      shards: shards.map((name, i): ShardRecord => ({
        name,
        routingKey: `${name}-key`,
        owner: "o",
        forks: { api: `127.0.0.1:${6000 + i}` },
        ttlSeconds: 60,
        expiresAt: now,
        tokenHash: "a".repeat(64),
        createdAt: now,
      })),
      sandboxes: [],
    }),
  );
}

/** Register the suite for one cache implementation. */
export function xdsCacheConformance(name: string, make: () => ProducerCache): void {
  const node = { id: "n1" };
  /** A new cache holding a snapshot of `shards` for node n1, and a collector of its answers. */
  const holding = (shards: string[]) => {
    const cache = make();
    const s = snapshot(shards);
    cache.setSnapshot("n1", s);
    const got: WatchResponse[] = [];
    return { cache, s, got, respond: (r: WatchResponse) => got.push(r) };
  };
  /** n1 watches `cache`: CDS from scratch (no version, every name) unless `request` says else. */
  const watchOf = (
    cache: ProducerCache,
    request: Partial<WatchRequest>,
    respond: (r: WatchResponse) => void,
  ) =>
    cache.createWatch(
      { node, typeUrl: TypeUrl.Cluster, versionInfo: "", resourceNames: [], ...request },
      respond,
    );

  test(`${name}: answers at once when it holds a version the client lacks`, (t) => {
    const { cache, s, got, respond } = holding(["a"]);
    watchOf(cache, {}, respond);
    t.is(got.length, 1);
    t.is(got[0]!.version, s.version(TypeUrl.Cluster));
    t.is(got[0]!.resources.length, s.resources(TypeUrl.Cluster).size);
  });

  test(`${name}: waits while the client is current, answers the next different version`, (t) => {
    const { cache, s: s1, got, respond } = holding(["a"]);
    watchOf(cache, { versionInfo: s1.version(TypeUrl.Cluster) }, respond);
    t.is(got.length, 0);
    cache.setSnapshot("n1", snapshot(["a"]));
    t.is(got.length, 0, "same content, same version: nothing to send");
    const s2 = snapshot(["a", "b"]);
    cache.setSnapshot("n1", s2);
    t.deepEqual(
      got.map((r) => r.version),
      [s2.version(TypeUrl.Cluster)],
    );
  });

  test(`${name}: never answers with a version the client rejected`, (t) => {
    const s1 = snapshot(["a"]);
    const { cache, s: s2, got, respond } = holding(["a", "b"]);
    watchOf(
      cache,
      { versionInfo: s1.version(TypeUrl.Cluster), rejectedVersion: s2.version(TypeUrl.Cluster) },
      respond,
    );
    t.is(got.length, 0);
    const s3 = snapshot(["c"]);
    cache.setSnapshot("n1", s3);
    t.deepEqual(
      got.map((r) => r.version),
      [s3.version(TypeUrl.Cluster)],
    );
  });

  test(`${name}: after a NACK, a changed subscription (force) is answered at the current version`, (t) => {
    const { cache, s: s2, got, respond } = holding(["a", "b"]);
    watchOf(
      cache,
      {
        resourceNames: ["shard/a/api"],
        rejectedVersion: s2.version(TypeUrl.Cluster),
        force: true,
      },
      respond,
    );
    t.deepEqual(
      got.map((r) => r.resources.map((x) => x.name)),
      [["shard/a/api"]],
    );
  });

  test(`${name}: empty resource names are a wildcard for CDS/LDS only, not for EDS/RDS`, (t) => {
    const { cache, s, got, respond } = holding(["a", "b"]);
    watchOf(cache, {}, respond);
    watchOf(cache, { typeUrl: TypeUrl.Endpoint }, respond);
    const [cds, eds] = got;
    t.is(cds?.resources.length, s.resources(TypeUrl.Cluster).size);
    t.true(s.resources(TypeUrl.Endpoint).size > 0, "the snapshot has endpoints to (not) send");
    t.deepEqual(eds?.resources ?? [], [], "EDS with no names subscribes to nothing");
  });

  test(`${name}: a named subscription gets only the named resources; force answers a current client`, (t) => {
    const { cache, s, got, respond } = holding(["a", "b"]);
    watchOf(
      cache,
      {
        versionInfo: s.version(TypeUrl.Cluster),
        resourceNames: ["shard/b/api", "missing"],
        force: true,
      },
      respond,
    );
    t.deepEqual(
      got[0]!.resources.map((r) => r.name),
      ["shard/b/api"],
    );
  });

  test(`${name}: one push answers clusters and endpoints before listeners and routes`, (t) => {
    const cache = make();
    const order: string[] = [];
    for (const typeUrl of [...PUSH_ORDER].reverse()) {
      cache.createWatch({ node, typeUrl, versionInfo: "", resourceNames: [] }, (r) =>
        order.push(r.typeUrl),
      );
    }
    cache.setSnapshot("n1", snapshot(["a"]));
    t.deepEqual(order, [...PUSH_ORDER]);
  });

  test(`${name}: a cancelled watch is not answered; other nodes' snapshots do not answer it`, (t) => {
    const cache = make();
    const got: WatchResponse[] = [];
    const cancel = watchOf(cache, { typeUrl: TypeUrl.Route }, (r) => got.push(r));
    cache.setSnapshot("other-node", snapshot(["a"]));
    t.is(got.length, 0);
    cancel();
    cache.setSnapshot("n1", snapshot(["a"]));
    t.is(got.length, 0);
  });

  test(`${name}: a delta watch gets only changed resources and removed names`, (t) => {
    const { cache, s: s1 } = holding(["a"]);
    const known = new Map([...s1.resources(TypeUrl.Cluster).values()].map((r) => [r.name, r.hash]));
    const got: { names: string[]; removed: readonly string[] }[] = [];
    const request = {
      node,
      typeUrl: TypeUrl.Cluster,
      wildcard: true,
      subscribed: new Set<string>(),
      known,
    };
    cache.createDeltaWatch(request, (r) =>
      got.push({ names: r.resources.map((x) => x.name), removed: r.removed }),
    );
    t.is(got.length, 0, "the client holds every current version");
    cache.setSnapshot("n1", snapshot(["b"]));
    t.deepEqual(got, [{ names: ["shard/b/api"], removed: ["shard/a/api"] }]);
  });
}
