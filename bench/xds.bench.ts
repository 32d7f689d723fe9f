/**
 * `npx tsx bench/xds.bench.ts`: the routing control plane under 100, 1,000 and 10,000 shards.
 *
 * 1. Push latency: a shard created in etcd → the controller's watch → translation → snapshot →
 *    ADS push → the client's ACK of the new route configuration version, as the server
 *    sees it (the clock stops on the server's `ack` event). The client is an ADS client built
 *    from Envoy's ADS proto with the gateway's node id, subscribed like Envoy (LDS/CDS wildcard,
 *    RDS every `ingress/<scope>`, SRDS wildcard, EDS the EDS clusters' names), that ACKs each
 *    response at once. Compared, in
 *    the same run, with the raw primitive underneath: an etcd put → the watch event. 100 samples
 *    per size.
 * 2. Translation time for one changed shard (memoized `Translator` + a `Snapshot` built from the
 *    one it replaces + its consistency check) at 10,000 vs 100 shards, and at 10,000 against
 *    translating everything from scratch.
 *
 * Writes `bench/results/xds.json`.
 */
import * as grpc from "@grpc/grpc-js";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startEtcd, type EtcdServer } from "../runtime/lib/etcd-server";
import { keys } from "../runtime/lib/keys";
import type { BaselineService, ShardRecord } from "../contract/model";
import { GATEWAY_NODE_ID } from "../contract/envoy-bootstrap";
import { RoutingController } from "../runtime/routing/controller";
import { ShardStore } from "../runtime/routing/shard-store";
import { translate, Translator } from "../runtime/routing/translate";
import { adsClientConstructor, PUSH_ORDER, Snapshot, TypeUrl } from "../runtime/routing/xds";

const SCALES = [100, 1_000, 10_000];
const SERVICES = 20;
const baseline: BaselineService[] = Array.from({ length: SERVICES }, (_, i) => ({
  name: `svc-${i}`,
  destination: `10.0.0.${i + 1}:8080`,
}));

function forkOf(i: number): Record<string, string> {
  return {
    [`svc-${i % SERVICES}`]: `10.${1 + Math.floor(i / 65536)}.${Math.floor(i / 256) % 256}.${i % 256}:8080`,
  };
}

function percentile(sorted: number[], p: number): number {
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)]!;
}
function summary(samples: number[]): {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
} {
  const sorted = [...samples].sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    n: sorted.length,
    p50: round(percentile(sorted, 50)),
    p95: round(percentile(sorted, 95)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted[sorted.length - 1]!),
  };
}

async function pool<T>(
  items: T[],
  concurrency: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/**
 * An Envoy-like ADS client with the gateway's node id: LDS and CDS wildcard, RDS every `ingress/<scope>`, EDS
 * the names of the EDS clusters (taken from the controller's snapshot rather than decoded from the
 * CDS response, so 10,000 decodes do not sit inside the measured time); ACKs every response.
 */
function envoyLikeClient(
  port: number,
  edsNames: () => string[],
  rdsNames: () => string[],
): { close(): void } {
  const Client = adsClientConstructor();
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": 256 * 1024 * 1024,
  });
  const call = (
    client as unknown as { StreamAggregatedResources(): grpc.ClientDuplexStream<unknown, unknown> }
  ).StreamAggregatedResources();
  call.on("error", () => undefined);
  const node = { id: GATEWAY_NODE_ID, cluster: "gateway" };
  const names: Record<string, string[]> = {
    [TypeUrl.Cluster]: [],
    [TypeUrl.Endpoint]: edsNames(),
    [TypeUrl.Listener]: [],
    [TypeUrl.ScopedRoute]: [],
    [TypeUrl.Route]: rdsNames(),
  };
  call.on("data", (r: { type_url: string; version_info: string; nonce: string }) => {
    if (r.type_url === TypeUrl.Cluster) names[TypeUrl.Endpoint] = edsNames();
    if (r.type_url === TypeUrl.ScopedRoute) names[TypeUrl.Route] = rdsNames();
    call.write({
      node,
      type_url: r.type_url,
      version_info: r.version_info,
      response_nonce: r.nonce,
      resource_names: names[r.type_url],
    });
  });
  for (const typeUrl of PUSH_ORDER) {
    call.write({ node, type_url: typeUrl, resource_names: names[typeUrl] });
  }
  return {
    close: () => {
      call.cancel();
      client.close();
    },
  };
}

async function pushLatency(etcd: EtcdServer, shards: number, samples: number) {
  const store = new ShardStore(etcd.client);
  await etcd.client.delete().prefix(keys.shardsPrefix);
  await etcd.client.delete().prefix(keys.routingKey(""));
  const loadStart = performance.now();
  await pool(
    Array.from({ length: shards }, (_, i) => i),
    32,
    async (i) => {
      await store.create(`s-${i}`, {
        routingKey: `key-${i}`,
        owner: "bench",
        forks: forkOf(i),
        ttlSeconds: 86_400,
      });
    },
  );
  const loadMillis = performance.now() - loadStart;
  const controller = new RoutingController({ etcd: etcd.client, baseline, xdsPort: 0 });
  const translateMillis: number[] = [];
  controller.events.on("snapshot", (e) => translateMillis.push(e.translateMillis));
  const port = await controller.start();
  const gatewayRoutes = () => controller.snapshot("gateway")?.version(TypeUrl.Route);
  // The clock stops when the server sees the client ACK the target route version.
  let routeAcks: ((version: string) => void) | undefined;
  controller.server.events.on("ack", (e) => {
    if (e.typeUrl === TypeUrl.Route) routeAcks?.(e.version);
  });
  const waitAck = (version: () => string | undefined) =>
    new Promise<void>((resolve) => {
      routeAcks = (v) => {
        if (v === version()) resolve();
      };
    });
  const initial = waitAck(gatewayRoutes);
  const gatewayNames = (typeUrl: TypeUrl) => () => [
    ...(controller.snapshot("gateway")?.resources(typeUrl).keys() ?? []),
  ];
  const client = envoyLikeClient(
    port,
    gatewayNames(TypeUrl.Endpoint),
    // The route configuration of every scope (ADR 0016), as Envoy asks once it has the scopes.
    gatewayNames(TypeUrl.Route),
  );
  await initial;
  translateMillis.length = 0;

  const latencies: number[] = [];
  const rawLatencies: number[] = [];
  const watcher = await etcd.client.watch().key("/bench/raw").create();
  for (let s = 0; s < samples; s++) {
    // The raw primitive: an etcd put → its watch event.
    const raw = new Promise<void>((resolve) => watcher.once("put", () => resolve()));
    const r0 = performance.now();
    await etcd.client.put("/bench/raw").value(String(s));
    await raw;
    rawLatencies.push(performance.now() - r0);

    const before = gatewayRoutes();
    let target: string | undefined;
    const pushed = new Promise<void>((resolve) => {
      const onSnapshot = () => {
        if (gatewayRoutes() !== before) {
          target = gatewayRoutes();
          controller.events.off("snapshot", onSnapshot);
        }
      };
      controller.events.on("snapshot", onSnapshot);
      routeAcks = (v) => {
        if (target !== undefined && v === target) resolve();
      };
    });
    const t0 = performance.now();
    await store.create(`new-${s}`, {
      routingKey: `new-key-${s}`,
      owner: "bench",
      forks: forkOf(shards + s),
      ttlSeconds: 86_400,
    });
    await pushed;
    latencies.push(performance.now() - t0);
  }
  await watcher.cancel();
  client.close();
  await controller.close();
  return {
    shards,
    loadMillis: Math.round(loadMillis),
    pushToAckMillis: summary(latencies),
    etcdPutToWatchMillis: summary(rawLatencies),
    controllerTranslateMillis: summary(translateMillis),
    ratioP50: Math.round((summary(latencies).p50 / summary(rawLatencies).p50) * 10) / 10,
  };
}

function shardRecord(i: number, now: string): ShardRecord {
  return {
    name: `s-${i}`,
    routingKey: `key-${i}`,
    owner: "bench",
    forks: forkOf(i),
    ttlSeconds: 86_400,
    expiresAt: now,
    tokenHash: "a".repeat(64),
    createdAt: now,
  };
}

function translationOneChange(shards: number, repeats: number) {
  const now = new Date().toISOString();
  const records = Array.from({ length: shards }, (_, i) => shardRecord(i, now));
  const translator = new Translator();
  const state = { baseline, shards: records, sandboxes: [] };
  // As the controller does: each snapshot built from the one it replaces, and checked.
  let previous = new Snapshot(translator.translate(state));
  if (!previous.consistent()) throw new Error("inconsistent snapshot");
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const changed = [...records];
    const i = (r * 7919) % shards;
    changed[i] = { ...records[i]!, routingKey: `key-${i}-r${r}` };
    const t0 = performance.now();
    const snapshot = new Snapshot(translator.translate({ ...state, shards: changed }), previous);
    if (!snapshot.consistent()) throw new Error("inconsistent snapshot");
    times.push(performance.now() - t0);
    previous = snapshot;
  }
  const scratch: number[] = [];
  for (let r = 0; r < Math.min(3, repeats); r++) {
    const t0 = performance.now();
    new Snapshot(translate(state));
    scratch.push(performance.now() - t0);
  }
  return { shards, oneChangeMillis: summary(times), fromScratchMillis: summary(scratch) };
}

async function main(): Promise<void> {
  const translation = SCALES.map((n) => translationOneChange(n, 100));
  const t100 = translation.find((x) => x.shards === 100)!;
  const t10k = translation.find((x) => x.shards === 10_000)!;
  console.log(JSON.stringify({ translation }, null, 2));

  const etcd = await startEtcd();
  const push = [];
  try {
    for (const n of SCALES) {
      const result = await pushLatency(etcd, n, 100);
      console.log(JSON.stringify(result));
      push.push(result);
    }
  } finally {
    await etcd.stop();
  }
  const results = {
    bench: "xds",
    date: new Date().toISOString(),
    machine: "2 shared cores; every number is from one run",
    services: SERVICES,
    push,
    translation,
    translationRatio10kVs100:
      Math.round((t10k.oneChangeMillis.p50 / t100.oneChangeMillis.p50) * 10) / 10,
    memoizedVsScratchAt10k:
      Math.round((t10k.oneChangeMillis.p50 / t10k.fromScratchMillis.p50) * 1000) / 1000,
  };
  await mkdir(join(__dirname, "results"), { recursive: true });
  await writeFile(join(__dirname, "results", "xds.json"), `${JSON.stringify(results, null, 2)}\n`);
  console.log(JSON.stringify(results, null, 2));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
