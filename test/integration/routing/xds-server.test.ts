/**
 * The ADS stream protocol against a raw client built from Envoy's own ADS proto: push order,
 * ACK/NACK bookkeeping, stale nonces, and that every pushed resource decodes into its type.
 */
import * as grpc from "@grpc/grpc-js";
import test, { type ExecutionContext } from "ava";
import type { ShardRecord } from "../../../contract/model";
import { translate, type RoutingState } from "../../../runtime/routing/translate";
import {
  adsClientConstructor,
  fetchClientStatus,
  PUSH_ORDER,
  Snapshot,
  SnapshotCache,
  TypeUrl,
  unpack,
  XdsServer,
  type AnyMessage,
  type NackEvent,
} from "../../../runtime/routing/xds";

interface Response {
  version_info: string;
  resources: AnyMessage[];
  type_url: string;
  nonce: string;
}

const now = "2026-01-01T00:00:00.000Z";
function state(shards: Record<string, string>): RoutingState {
  return {
    baseline: [{ name: "api", destination: "127.0.0.1:5000" }],
    shards: Object.entries(shards).map(([name, fork]): ShardRecord => ({
      name,
      routingKey: `${name}-key`,
      owner: "o",
      forks: { api: fork },
      ttlSeconds: 60,
      expiresAt: now,
      tokenHash: "a".repeat(64),
      createdAt: now,
    })),
    sandboxes: [],
  };
}

/**
 * A cache, an xDS server on it, and one stream (`method`: state of the world or delta) of a raw
 * ADS client to it; all closed at teardown. `next()` is the next response, or undefined after
 * `timeoutMs`.
 */
async function openStream<R>(
  t: ExecutionContext,
  method: "StreamAggregatedResources" | "DeltaAggregatedResources",
) {
  const cache = new SnapshotCache();
  const server = new XdsServer(cache, {
    currentSnapshot: (node) => cache.getSnapshot(cache.nodeKey(node)),
  });
  const port = await server.listen(0);
  t.teardown(() => server.close());
  const Client = adsClientConstructor();
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const call = (
    client as unknown as Record<typeof method, () => grpc.ClientDuplexStream<unknown, R>>
  )[method]();
  call.on("error", () => undefined);
  t.teardown(() => call.cancel());
  const received: R[] = [];
  let wake: (() => void) | undefined;
  call.on("data", (r: R) => {
    received.push(r);
    wake?.();
  });
  const next = async (timeoutMs = 5000): Promise<R | undefined> => {
    const deadline = Date.now() + timeoutMs;
    while (received.length === 0 && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 50);
      });
    }
    return received.shift();
  };
  return { cache, server, call, next, address: `127.0.0.1:${port}` };
}

async function setup(t: ExecutionContext) {
  const { cache, server, call, next, address } = await openStream<Response>(
    t,
    "StreamAggregatedResources",
  );
  const node = { id: "envoy-1", cluster: "gateway" };
  const send = (typeUrl: string, version = "", nonce = "", error?: string, names: string[] = []) =>
    call.write({
      node,
      type_url: typeUrl,
      version_info: version,
      response_nonce: nonce,
      resource_names: names,
      ...(error === undefined ? {} : { error_detail: { code: 3, message: error } }),
    });
  return { cache, server, send, next, node, address };
}

test("pushes clusters and endpoints before listeners and routes; every resource decodes", async (t) => {
  const { cache, send, next } = await setup(t);
  const snapshot = new Snapshot(translate(state({ alice: "127.0.0.1:6000" })));
  const names = (typeUrl: TypeUrl) => [...snapshot.resources(typeUrl).keys()];
  // Requested in reverse push order (routes, route scopes and listeners before clusters).
  for (const typeUrl of [...PUSH_ORDER].reverse()) {
    send(typeUrl, "", "", undefined, names(typeUrl));
  }
  // The requests wait in the cache (no snapshot yet); then one push answers them all.
  while (cache.openWatchCount() < PUSH_ORDER.length) await new Promise((r) => setTimeout(r, 20));
  t.true(snapshot.consistent());
  cache.setSnapshot("envoy-1", snapshot);
  const clusterResponses = [await next(), await next()];
  // Listeners and routes wait until the clusters and endpoints are ACKed.
  t.is(await next(300), undefined, "no listener/route before the clusters are ACKed");
  for (const r of clusterResponses) {
    send(r!.type_url, r!.version_info, r!.nonce, undefined, names(r!.type_url as TypeUrl));
  }
  const responses = [...clusterResponses];
  while (responses.length < PUSH_ORDER.length) responses.push(await next());
  t.deepEqual(
    responses.map((r) => r?.type_url),
    [...PUSH_ORDER],
  );
  for (const response of responses) {
    const typeUrl = response!.type_url as TypeUrl;
    t.is(response!.version_info, snapshot.version(typeUrl));
    t.is(response!.resources.length, snapshot.resources(typeUrl).size);
    for (const any of response!.resources) {
      t.is(any.type_url, typeUrl);
      const decoded = unpack(any);
      const name = decoded[typeUrl === TypeUrl.Endpoint ? "cluster_name" : "name"] as string;
      t.true(snapshot.resources(typeUrl).has(name), `${typeUrl} ${name}`);
    }
  }
});

test("a NACKed version is logged, never counted as accepted, and never re-sent", async (t) => {
  const { cache, server, send, next } = await setup(t);
  const nacks: NackEvent[] = [];
  server.events.on("nack", (e) => nacks.push(e));
  const v1 = new Snapshot(translate(state({ alice: "127.0.0.1:6000" })));
  cache.setSnapshot("envoy-1", v1);
  send(TypeUrl.Cluster);
  const first = (await next())!;
  t.is(first.version_info, v1.version(TypeUrl.Cluster));
  send(TypeUrl.Cluster, first.version_info, first.nonce); // ACK
  t.is(await next(300), undefined, "nothing new after an ACK");
  const states = () => [...server.streamStates().values()][0]!.get(TypeUrl.Cluster)!;
  t.is(states().ackedVersion, v1.version(TypeUrl.Cluster));

  const v2 = new Snapshot(translate(state({ alice: "127.0.0.1:6000", bob: "127.0.0.1:6001" })));
  cache.setSnapshot("envoy-1", v2);
  const second = (await next())!;
  t.is(second.version_info, v2.version(TypeUrl.Cluster));
  send(TypeUrl.Cluster, first.version_info, second.nonce, "cluster shard/bob/api: bad config");
  t.is(await next(500), undefined, "the rejected version is not sent again");
  t.is(states().ackedVersion, v1.version(TypeUrl.Cluster), "acked version stays the last accepted");
  t.is(states().rejectedVersion, v2.version(TypeUrl.Cluster));
  t.is(nacks.length, 1);
  t.is(nacks[0]!.error, "cluster shard/bob/api: bad config");
  t.is(nacks[0]!.version, v2.version(TypeUrl.Cluster));
  cache.setSnapshot(
    "envoy-1",
    new Snapshot(translate(state({ alice: "127.0.0.1:6000", bob: "127.0.0.1:6001" }))),
  );
  t.is(await next(300), undefined, "the same rejected content is not re-sent either");

  const v3 = new Snapshot(translate(state({ bob: "127.0.0.1:6001" })));
  cache.setSnapshot("envoy-1", v3);
  const third = (await next())!;
  t.is(third.version_info, v3.version(TypeUrl.Cluster));
  // A stale request (old nonce) is ignored: it neither ACKs nor triggers a response.
  send(TypeUrl.Cluster, second.version_info, second.nonce);
  t.is(await next(300), undefined);
  t.is(states().ackedVersion, v1.version(TypeUrl.Cluster));
  send(TypeUrl.Cluster, third.version_info, third.nonce);
  await next(200);
  t.is(states().ackedVersion, v3.version(TypeUrl.Cluster));
});

interface DeltaResponse {
  system_version_info: string;
  resources: { name: string; version: string; resource: AnyMessage }[];
  type_url: string;
  removed_resources: string[];
  nonce: string;
}

test("CSDS follows one stream: NOT_SENT, STALE, SYNCED, ERROR with the client's reason", async (t) => {
  const { cache, server, send, next, address } = await setup(t);
  const status = async (typeUrl: TypeUrl) => {
    const [client] = await fetchClientStatus(address, { nodeId: "envoy-1" });
    const entries = client?.generic_xds_configs.filter((c) => c.type_url === typeUrl) ?? [];
    return entries.map((e) => ({
      name: e.name,
      version: e.version_info,
      status: e.config_status,
      client: e.client_status,
      error: e.error_state?.details,
    }));
  };
  const typeAsWhole = (status: string, client: string, version = "") => [
    { name: "", version, status, client, error: undefined },
  ];
  send(TypeUrl.Cluster);
  send(TypeUrl.Listener);
  while (cache.openWatchCount() < 2) await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(
    await status(TypeUrl.Cluster),
    typeAsWhole("NOT_SENT", "REQUESTED"),
    "asked, not sent",
  );

  const v1 = new Snapshot(translate(state({ alice: "127.0.0.1:6000" })));
  cache.setSnapshot("envoy-1", v1);
  const clusters = (await next())!;
  t.is(clusters.type_url, TypeUrl.Cluster);
  const each = (
    typeUrl: TypeUrl,
    snapshot: Snapshot,
    status: string,
    client: string,
    error?: string,
  ) =>
    [...snapshot.resources(typeUrl).keys()].map((name) => ({
      name,
      version: snapshot.version(typeUrl),
      status,
      client,
      error,
    }));
  t.deepEqual(
    await status(TypeUrl.Cluster),
    each(TypeUrl.Cluster, v1, "STALE", "REQUESTED"),
    "sent, no answer yet",
  );
  t.deepEqual(
    await status(TypeUrl.Listener),
    typeAsWhole("NOT_SENT", "REQUESTED"),
    "listeners held back until the clusters are ACKed",
  );
  send(TypeUrl.Cluster, clusters.version_info, clusters.nonce); // ACK
  const listeners = (await next())!;
  t.is(listeners.type_url, TypeUrl.Listener);
  const listenersAcked = answered(server, "ack", TypeUrl.Listener);
  send(TypeUrl.Listener, listeners.version_info, listeners.nonce); // ACK
  await listenersAcked;
  t.deepEqual(await status(TypeUrl.Cluster), each(TypeUrl.Cluster, v1, "SYNCED", "ACKED"));
  t.deepEqual(await status(TypeUrl.Listener), each(TypeUrl.Listener, v1, "SYNCED", "ACKED"));

  // A cluster version the client rejects: ERROR, with the rejected version and its reason.
  const v2 = new Snapshot(translate(state({ alice: "127.0.0.1:6000", bob: "127.0.0.1:6001" })));
  t.not(v2.version(TypeUrl.Cluster), v1.version(TypeUrl.Cluster));
  cache.setSnapshot("envoy-1", v2);
  const rejected = (await next())!;
  t.is(rejected.version_info, v2.version(TypeUrl.Cluster));
  const nacked = answered(server, "nack", TypeUrl.Cluster);
  send(TypeUrl.Cluster, clusters.version_info, rejected.nonce, "cluster alice/api: bad endpoint");
  await nacked;
  t.deepEqual(
    await status(TypeUrl.Cluster),
    each(TypeUrl.Cluster, v2, "ERROR", "NACKED", "cluster alice/api: bad endpoint"),
  );

  // The next version is sent (the rejected one never again) and ACKed: SYNCED.
  const v3 = new Snapshot(
    translate(state({ alice: "127.0.0.1:6000", bob: "127.0.0.1:6001", carol: "127.0.0.1:6002" })),
  );
  cache.setSnapshot("envoy-1", v3);
  const fixed = (await next())!;
  t.is(fixed.version_info, v3.version(TypeUrl.Cluster));
  const fixedAcked = answered(server, "ack", TypeUrl.Cluster);
  send(TypeUrl.Cluster, fixed.version_info, fixed.nonce);
  await fixedAcked;
  t.deepEqual(await status(TypeUrl.Cluster), each(TypeUrl.Cluster, v3, "SYNCED", "ACKED"));
});

test("CSDS: a NACKed version that is sent again and ACKed is SYNCED, not ERROR", async (t) => {
  const { cache, server, send, next, address } = await setup(t);
  const status = async () => {
    const [client] = await fetchClientStatus(address, { nodeId: "envoy-1" });
    return [...new Set(client!.generic_xds_configs.map((c) => c.config_status))];
  };
  cache.setSnapshot("envoy-1", new Snapshot(translate(state({ alice: "127.0.0.1:6000" }))));
  send(TypeUrl.Cluster);
  const v1 = (await next())!;
  send(TypeUrl.Cluster, v1.version_info, v1.nonce);
  const s2 = new Snapshot(translate(state({ alice: "127.0.0.1:6000", bob: "127.0.0.1:6001" })));
  cache.setSnapshot("envoy-1", s2);
  const v2 = (await next())!;
  const nacked = answered(server, "nack", TypeUrl.Cluster);
  send(TypeUrl.Cluster, v1.version_info, v2.nonce, "not now");
  await nacked;
  t.deepEqual(await status(), ["ERROR"]);
  // A changed subscription ("*" for the implicit wildcard) makes the server send v2 again.
  send(TypeUrl.Cluster, v1.version_info, v2.nonce, undefined, ["*"]);
  const again = (await next())!;
  t.is(again.version_info, s2.version(TypeUrl.Cluster));
  const acked = answered(server, "ack", TypeUrl.Cluster);
  send(TypeUrl.Cluster, again.version_info, again.nonce, undefined, ["*"]);
  await acked;
  t.deepEqual(await status(), ["SYNCED"], "the ACK of the re-sent version clears the error");
});

test("incremental (delta) ADS sends only what changed, and what was removed; CSDS follows it per resource", async (t) => {
  const { cache, server, call, next, address } = await openStream<DeltaResponse>(
    t,
    "DeltaAggregatedResources",
  );
  const nacks: NackEvent[] = [];
  server.events.on("nack", (e) => nacks.push(e));
  const node = { id: "envoy-1" };
  const send = (typeUrl: string, fields: Record<string, unknown>) =>
    call.write({ node, type_url: typeUrl, ...fields });

  const s1 = new Snapshot(translate(state({ alice: "127.0.0.1:6000" })));
  cache.setSnapshot("envoy-1", s1);
  send(TypeUrl.Cluster, {}); // CDS: wildcard by default
  const first = (await next())!;
  t.deepEqual(
    first.resources.map((r) => r.name).sort(),
    [...s1.resources(TypeUrl.Cluster).keys()].sort(),
  );
  for (const r of first.resources) {
    t.is(r.resource.type_url, TypeUrl.Cluster);
    t.is(unpack(r.resource).name, r.name);
    t.is(r.version, s1.resources(TypeUrl.Cluster).get(r.name)!.hash);
  }
  const firstAcked = answered(server, "ack", TypeUrl.Cluster);
  send(TypeUrl.Cluster, { response_nonce: first.nonce });
  await firstAcked;
  const csds = async () => {
    const [one] = await fetchClientStatus(address, { nodeId: "envoy-1" });
    return (one?.generic_xds_configs ?? [])
      .map((c) => `${c.name} ${c.config_status} ${c.client_status} ${c.version_info.slice(0, 8)}`)
      .sort();
  };
  const hash = (snapshot: Snapshot, name: string) =>
    snapshot.resources(TypeUrl.Cluster).get(name)!.hash.slice(0, 8);
  t.deepEqual(
    await csds(),
    [...s1.resources(TypeUrl.Cluster).keys()].map((n) => `${n} SYNCED ACKED ${hash(s1, n)}`).sort(),
  );

  const s2 = new Snapshot(translate(state({ alice: "127.0.0.1:6000", bob: "127.0.0.1:6001" })));
  cache.setSnapshot("envoy-1", s2);
  const second = (await next())!;
  t.deepEqual(
    await csds(),
    [...s2.resources(TypeUrl.Cluster).keys()]
      .map((n) => `${n} STALE REQUESTED ${hash(s2, n)}`)
      .sort(),
    "sent, not answered yet",
  );
  t.deepEqual(
    second.resources.map((r) => r.name),
    ["shard/bob/api"],
    "only the new cluster is sent",
  );
  t.deepEqual(second.removed_resources, []);
  const secondAcked = answered(server, "ack", TypeUrl.Cluster);
  send(TypeUrl.Cluster, { response_nonce: second.nonce });
  await secondAcked;
  t.deepEqual(
    await csds(),
    [...s2.resources(TypeUrl.Cluster).keys()].map((n) => `${n} SYNCED ACKED ${hash(s2, n)}`).sort(),
    "the unchanged clusters (not re-sent) are SYNCED as well as the new one",
  );

  cache.setSnapshot("envoy-1", new Snapshot(translate(state({ bob: "127.0.0.1:6001" }))));
  const third = (await next())!;
  t.deepEqual(third.resources, []);
  t.deepEqual(third.removed_resources, ["shard/alice/api"]);
  send(TypeUrl.Cluster, { response_nonce: third.nonce, error_detail: { code: 3, message: "no" } });
  t.is(await next(300), undefined, "a NACK is not answered by a re-send");
  t.is(nacks.length, 1);
  t.true(
    (await csds()).every((line) => / ERROR NACKED /.test(line)),
    "after a NACK every resource of the type is ERROR",
  );

  // EDS is not wildcard: only the named assignment comes.
  send(TypeUrl.Endpoint, { resource_names_subscribe: ["baseline/api"] });
  const eds = (await next())!;
  t.deepEqual(
    eds.resources.map((r) => r.name),
    ["baseline/api"],
  );
  // Delta streams are listed with their ACK state like SotW streams.
  const [deltaStream] = [...server.streamStates().values()];
  t.is(deltaStream?.get(TypeUrl.Cluster)?.rejectedVersion, third.system_version_info);
  t.is(deltaStream?.get(TypeUrl.Cluster)?.ackedVersion, second.system_version_info);
});

test("the first request of a new stream is answered even when it carries an old stream's nonce", async (t) => {
  const { cache, send, next } = await setup(t);
  cache.setSnapshot("envoy-1", new Snapshot(translate(state({ alice: "127.0.0.1:6000" }))));
  send(TypeUrl.Cluster, "some-old-version", "17"); // a reconnecting client's last ACK
  const response = await next(2000);
  t.is(response?.type_url, TypeUrl.Cluster, "answered (go-control-plane does the same)");
});

test("after a NACK, a change of subscribed names is answered", async (t) => {
  const { cache, send, next } = await setup(t);
  const v1 = new Snapshot(translate(state({ alice: "127.0.0.1:6000", bob: "127.0.0.1:6001" })));
  cache.setSnapshot("envoy-1", v1);
  send(TypeUrl.Endpoint, "", "", undefined, ["shard/alice/api"]);
  const first = (await next())!;
  send(TypeUrl.Endpoint, "", first.nonce, "bad endpoint", ["shard/alice/api"]); // NACK
  t.is(await next(300), undefined, "the NACKed version is not re-sent");
  send(TypeUrl.Endpoint, "", first.nonce, "bad endpoint", ["shard/bob/api"]);
  const other = await next(2000);
  t.deepEqual(
    other?.resources.map((r) => unpack(r).cluster_name),
    ["shard/bob/api"],
    "the new subscription is answered",
  );
});

test("CSDS: a delta client that reconnects holding the current resources is SYNCED with nothing sent", async (t) => {
  const { cache, call, next, address } = await openStream<DeltaResponse>(
    t,
    "DeltaAggregatedResources",
  );
  const s1 = new Snapshot(translate(state({ alice: "127.0.0.1:6000" })));
  cache.setSnapshot("envoy-1", s1);
  const held = Object.fromEntries(
    [...s1.resources(TypeUrl.Cluster)].map(([name, r]) => [name, r.hash]),
  );
  call.write({
    node: { id: "envoy-1" },
    type_url: TypeUrl.Cluster,
    initial_resource_versions: held,
  });
  t.is(await next(500), undefined, "the client holds every cluster already: nothing to send");
  const [client] = await fetchClientStatus(address, { nodeId: "envoy-1" });
  t.deepEqual(
    client!.generic_xds_configs
      .map((c) => `${c.name} ${c.config_status} ${c.client_status}`)
      .sort(),
    Object.keys(held)
      .map((name) => `${name} SYNCED ACKED`)
      .sort(),
  );
});

/**
 * Resolves on the server's next ACK (or NACK) of `typeUrl`: the server records the answer before it
 * emits the event, so CSDS read after it reflects the answer. Subscribe before sending.
 */
function answered(server: XdsServer, kind: "ack" | "nack", typeUrl: TypeUrl): Promise<void> {
  return new Promise((resolve) => {
    const on = (event: { typeUrl: TypeUrl }): void => {
      if (event.typeUrl !== typeUrl) return;
      server.events.off(kind, on);
      resolve();
    };
    server.events.on(kind, on);
  });
}
