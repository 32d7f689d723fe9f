/**
 * `npx tsx bench/gateway.bench.ts`: the real Envoy gateway (1.40, one worker) fed by the routing
 * controller, at 10, 1,000 and 10,000 shards (20 baseline services, each shard forking one).
 *
 * 1. Per request, through Envoy vs direct to the backend (the primitive underneath, same run):
 *    latency p50/p99 over one keep-alive connection, for requests without a key, with the header
 *    key (→ a fork), and with baggage of 28 B, 8 KiB and 56 KiB that holds no routing member;
 *    Envoy CPU per request (utime+stime from /proc/<pid>/stat over the run); Envoy RSS.
 * 2. Push latency: a shard put into etcd → the first request through Envoy that reaches its fork
 *    (polled over one connection), at 10 and 10,000 shards.
 * 3. Translation of one change (translate + both snapshots, as the controller does) at 10,000 vs
 *    100 shards.
 *
 * Every loop is bounded; all traffic is on loopback. Writes `bench/results/gateway.json`.
 */
import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { Agent, createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { startEtcd } from "../runtime/lib/etcd-server";
import { keys } from "../runtime/lib/keys";
import type { BaselineService, ShardRecord } from "../contract/model";
import { freePort } from "../runtime/lib/ports";
import { RoutingController } from "../runtime/routing/controller";
import { startEnvoy } from "../runtime/routing/envoy-process";
import {
  DEFAULT_ROUTE_BUCKETS,
  forNode,
  routeBucket,
  Translator,
} from "../runtime/routing/translate";
import { Snapshot } from "../runtime/routing/xds";
import { ensureEnvoy } from "../scripts/envoy";
import { ratio, stats, type LatencyStats } from "./lib";

const SCALES = [10, 1_000, 10_000];
const SERVICES = 20;
const REQUESTS = 2000;
const PUSH_SAMPLES = 40;
const CLOCK_TICKS = 100; // USER_HZ on Linux
const TICK_MS = 1000 / CLOCK_TICKS;

function say(message: string): void {
  process.stderr.write(`gateway bench: ${message}\n`);
}

async function backend(answer: (key: string | undefined) => string) {
  const server = createServer({ maxHeaderSize: 64 * 1024, keepAliveTimeout: 60_000 }, (req, res) =>
    res.end(answer(req.headers["x-shardworks-routing-key"] as string | undefined)),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return { port, address: `127.0.0.1:${port}`, close: () => server.close() };
}

/** One keep-alive connection's worth of GETs. */
function client(port: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const get = (host: string, headers: Record<string, string>): Promise<string> =>
    new Promise((resolve, reject) => {
      const req = request(
        { host: "127.0.0.1", port, path: "/", agent, headers: { ...headers, host } },
        (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => (body += c));
          res.on("end", () => resolve(`${res.statusCode} ${body}`));
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error("timed out")));
      req.on("error", reject);
      req.end();
    });
  return { get, close: () => agent.destroy() };
}

function cpuMillis(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS; // utime, stime
}
function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmRSS:"))!;
  return Math.round((Number(line.split(/\s+/)[1]) / 1024) * 10) / 10;
}

function shardRecord(i: number, key: string, fork: string): ShardRecord {
  const now = new Date();
  return {
    name: `s-${i}`,
    routingKey: key,
    owner: "bench",
    forks: { [`svc-${i % SERVICES}`]: fork },
    ttlSeconds: 86_400,
    expiresAt: new Date(now.getTime() + 86_400_000).toISOString(),
    tokenHash: "a".repeat(64),
    createdAt: now.toISOString(),
  };
}

const baggageOf = (bytes: number): string => {
  const members = ["userid=42", "tenant=acme", "region=eu-west-1"];
  let out = members.join(",");
  for (let i = 0; out.length < bytes; i++) out += `,m${i}=${"v".repeat(40)}`;
  return out.slice(0, bytes);
};
const KINDS: Record<string, (key: string) => Record<string, string>> = {
  "no key": () => ({}),
  "header key (fork)": (key) => ({ "x-shardworks-routing-key": key }),
  "baggage 28 B, no member": () => ({ baggage: baggageOf(28) }),
  "baggage 8 KiB, no member": () => ({ baggage: baggageOf(8 * 1024) }),
  "baggage 56 KiB, no member": () => ({ baggage: baggageOf(56 * 1024) }),
};

interface KindResult {
  envoy: LatencyStats;
  direct: LatencyStats;
  p50Ratio: number;
  envoyCpuMicrosPerRequest: number;
}

async function measure(
  envoyPid: number,
  through: ReturnType<typeof client>,
  direct: ReturnType<typeof client>,
  key: string,
): Promise<Record<string, KindResult>> {
  const out: Record<string, KindResult> = {};
  for (const [kind, headers] of Object.entries(KINDS)) {
    const h = headers(key);
    const expectFork = kind.startsWith("header");
    const time = async (c: ReturnType<typeof client>, check: boolean) => {
      const samples: number[] = [];
      for (let i = 0; i < REQUESTS; i++) {
        const t0 = performance.now();
        const body = await c.get("svc-0", h);
        samples.push(performance.now() - t0);
        if (check && !body.startsWith(expectFork ? "200 fork:" : "200 baseline")) {
          throw new Error(`${kind}: unexpected answer ${body.slice(0, 80)}`);
        }
      }
      return stats(samples);
    };
    const cpu0 = cpuMillis(envoyPid);
    const envoy = await time(through, true);
    const cpu = cpuMillis(envoyPid) - cpu0;
    const directStats = await time(direct, false);
    out[kind] = {
      envoy,
      direct: directStats,
      p50Ratio: ratio(envoy.p50, directStats.p50),
      envoyCpuMicrosPerRequest: Math.round((cpu * 1000) / REQUESTS),
    };
    say(
      `  ${kind}: envoy p50 ${envoy.p50} ms, direct ${directStats.p50} ms, cpu ${out[kind].envoyCpuMicrosPerRequest} µs/req`,
    );
  }
  return out;
}

function translationOneChange(shards: number, repeats: number) {
  const baseline: BaselineService[] = Array.from({ length: SERVICES }, (_, i) => ({
    name: `svc-${i}`,
    destination: `10.0.0.${i + 1}:8080`,
  }));
  const records = Array.from({ length: shards }, (_, i) =>
    shardRecord(i, `key-${i}`, `10.1.${Math.floor(i / 256) % 256}.${i % 256}:8080`),
  );
  const translator = new Translator();
  const previous = new Map<string, Snapshot>();
  // As the controller does: translate, then both snapshots, each from the one it replaces.
  const build = (s: readonly ShardRecord[]) => {
    const resources = translator.translate({ baseline, shards: s, sandboxes: [] });
    for (const kind of ["gateway", "grpc"] as const) {
      const snapshot = new Snapshot(forNode(resources, kind), previous.get(kind));
      if (snapshot.inconsistencies().length > 0) throw new Error(`inconsistent ${kind} snapshot`);
      previous.set(kind, snapshot);
    }
  };
  build(records);
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const changed = [...records];
    const i = (r * 7919) % shards;
    changed[i] = { ...records[i]!, routingKey: `key-${i}-r${r}` };
    const t0 = performance.now();
    build(changed);
    times.push(performance.now() - t0);
  }
  return { shards, oneChangeMillis: stats(times) };
}

async function main(): Promise<void> {
  const translation = [100, 10_000].map((n) => translationOneChange(n, 30));
  say(`translation: ${JSON.stringify(translation)}`);

  const etcd = await startEtcd();
  const baselineBackend = await backend(() => "baseline");
  const forkBackend = await backend((key) => `fork:${key ?? "?"}`);
  const ingressPort = await freePort();
  const controller = new RoutingController({
    etcd: etcd.client,
    baseline: Array.from({ length: SERVICES }, (_, i) => ({
      name: `svc-${i}`,
      destination: baselineBackend.address,
    })),
    xdsPort: 0,
    ingressHost: "127.0.0.1",
    ingressPort,
  });
  const envoy = await startEnvoy({ binary: ensureEnvoy(), adsPort: await controller.start() });
  const through = client(ingressPort);
  const direct = client(baselineBackend.port);
  const routed = async (key: string, deadlineMs: number): Promise<boolean> => {
    const deadline = performance.now() + deadlineMs;
    while (performance.now() < deadline) {
      if ((await through.get("svc-0", { "x-shardworks-routing-key": key })) === `200 fork:${key}`) {
        return true;
      }
    }
    return false;
  };
  const scales: Record<string, unknown>[] = [];
  const push: Record<string, unknown>[] = [];
  try {
    const rss0 = rssMiB(envoy.pid);
    let created = 0;
    for (const n of SCALES) {
      say(`${n} shards: writing ${n - created} to etcd`);
      for (let start = created; start < n; start += 500) {
        await Promise.all(
          Array.from({ length: Math.min(500, n - start) }, (_, j) => {
            const i = start + j;
            const record = shardRecord(i, `key-${i}`, forkBackend.address);
            return etcd.client.put(keys.shard(record.name)).value(JSON.stringify(record));
          }),
        );
      }
      created = n;
      // Shard i forks svc-(i % 20): the last multiple of 20 forks svc-0.
      const key = `key-${Math.floor((n - 1) / SERVICES) * SERVICES}`;
      if (!(await routed(key, 120_000))) throw new Error(`${n} shards: ${key} never routed`);
      await new Promise((r) => setTimeout(r, 2000)); // let Envoy settle (old config drained)
      const rss = rssMiB(envoy.pid);
      say(`${n} shards: Envoy RSS ${rss} MiB`);
      const perRequest = await measure(envoy.pid, through, direct, key);
      scales.push({ shards: n, envoyRssMiB: rss, perRequest });
      if (n === SCALES[0] || n === SCALES.at(-1)) {
        const samples: number[] = [];
        // The controller's share of each push: translate + both snapshots + their checks.
        const controllerMillis: number[] = [];
        const onSnapshot = (e: { translateMillis: number }) =>
          controllerMillis.push(e.translateMillis);
        controller.events.on("snapshot", onSnapshot);
        for (let j = 0; j < PUSH_SAMPLES; j++) {
          const i = j * SERVICES; // forks svc-0
          const pushKey = `push-${n}-${j}`;
          const record = { ...shardRecord(i, pushKey, forkBackend.address), name: `p-${n}-${j}` };
          const t0 = performance.now();
          await etcd.client.put(keys.shard(record.name)).value(JSON.stringify(record));
          if (!(await routed(pushKey, 10_000))) throw new Error(`push ${pushKey} never routed`);
          samples.push(performance.now() - t0);
        }
        controller.events.off("snapshot", onSnapshot);
        // Take them out again so the next scale has exactly its count.
        await etcd.client.delete().prefix(keys.shard(`p-${n}-`));
        // Envoy's side: how long it takes to apply one scope's RouteConfiguration (the last
        // push's bucket; ADR 0016).
        const lastScope = `ingress/b${routeBucket(`push-${n}-${PUSH_SAMPLES - 1}`, DEFAULT_ROUTE_BUCKETS)}`;
        const envoyStats = (
          await envoy.admin(
            `/stats?filter=${encodeURIComponent(`rds\\.${lastScope}\\.update_duration|rate_limit_enforced`)}`,
          )
        )
          .trim()
          .split("\n");
        const controllerStats = stats(controllerMillis);
        push.push({
          shards: n,
          shardPutToFirstRoutedRequestMillis: stats(samples),
          controllerMillisPerChange: controllerStats,
          envoyStats,
        });
        say(
          `${n} shards: push ${JSON.stringify(stats(samples))}, controller ${JSON.stringify(controllerStats)} ${envoyStats.join(" | ")}`,
        );
      }
    }
    const first = scales[0] as { envoyRssMiB: number; perRequest: Record<string, KindResult> };
    const last = scales.at(-1) as { envoyRssMiB: number; perRequest: Record<string, KindResult> };
    const results = {
      bench: "gateway",
      date: new Date().toISOString(),
      machine: "2 shared cores; every number is from one run; Envoy 1.40.0, --concurrency 1",
      services: SERVICES,
      requestsPerKind: REQUESTS,
      envoyRssAtStartMiB: rss0,
      scales,
      push,
      translation,
      ratios10kVs10: Object.fromEntries(
        Object.keys(KINDS).map((kind) => [
          kind,
          {
            p50: ratio(last.perRequest[kind]!.envoy.p50, first.perRequest[kind]!.envoy.p50),
            p99: ratio(last.perRequest[kind]!.envoy.p99, first.perRequest[kind]!.envoy.p99),
            cpu: ratio(
              last.perRequest[kind]!.envoyCpuMicrosPerRequest,
              Math.max(1, first.perRequest[kind]!.envoyCpuMicrosPerRequest),
            ),
          },
        ]),
      ),
      envoyKiBPerShard: Math.round(
        ((last.envoyRssMiB - first.envoyRssMiB) * 1024) / (SCALES.at(-1)! - SCALES[0]!),
      ),
      translationRatio10kVs100: ratio(
        translation[1]!.oneChangeMillis.p50,
        translation[0]!.oneChangeMillis.p50,
      ),
      cpuNote: `CPU from /proc in ${TICK_MS} ms ticks over ${REQUESTS} requests: resolution ${(TICK_MS * 1000) / REQUESTS} µs/request`,
    };
    await mkdir(join(__dirname, "results"), { recursive: true });
    await writeFile(
      join(__dirname, "results", "gateway.json"),
      `${JSON.stringify(results, null, 2)}\n`,
    );
    console.log(JSON.stringify(results, null, 2));
  } finally {
    through.close();
    direct.close();
    await envoy.stop();
    await controller.close();
    baselineBackend.close();
    forkBackend.close();
    await etcd.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
