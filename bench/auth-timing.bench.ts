/**
 * Does authentication time tell which shard names exist (issue 13, defect 11)? Interleaved 401s
 * for a known shard name with a wrong secret and for an unknown name, through the whole API, and
 * the primitive underneath in the same run: one raw etcd read of a shard key. The known/unknown
 * ratio should be 1 within noise. Writes bench/results/auth-timing.json.
 *
 *   npx tsx bench/auth-timing.bench.ts [--iterations 400]
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadavg } from "node:os";
import { keys, startEtcd } from "../runtime/lib";
import { startScheduler } from "../runtime/scheduler";
import { ratio, stats } from "./lib";

const PLATFORM = "bench-platform-token-0123456789";

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { iterations: { type: "string", default: "400" } } });
  const iterations = Number(values.iterations);
  const etcd = await startEtcd();
  const scheduler = await startScheduler({
    etcdEndpoints: [etcd.endpoint],
    platformToken: PLATFORM,
    placer: false,
  });
  try {
    const created = await fetch(`${scheduler.url}/v1/shards/alice`, {
      method: "PUT",
      headers: { authorization: `Bearer ${PLATFORM}`, "content-type": "application/json" },
      body: JSON.stringify({ routingKey: "key-alice", owner: "alice", forks: [] }),
    });
    if (created.status !== 201) throw new Error(`shard create: ${created.status}`);
    const timeAuth = async (token: string): Promise<number> => {
      const started = performance.now();
      const r = await fetch(`${scheduler.url}/v1/sandboxes`, {
        headers: { authorization: `Bearer ${token}` },
      });
      await r.arrayBuffer();
      if (r.status !== 401) throw new Error(`expected 401, got ${r.status}`);
      return performance.now() - started;
    };
    const timeRaw = async (): Promise<number> => {
      const started = performance.now();
      await etcd.client.get(keys.shard("alice")).exec();
      return performance.now() - started;
    };
    // Warm-up, then interleave so drift on the shared machine hits every series alike.
    for (let i = 0; i < 50; i++) await Promise.all([timeAuth("alice.x"), timeAuth("nobody.x")]);
    const known: number[] = [];
    const unknown: number[] = [];
    const raw: number[] = [];
    for (let i = 0; i < iterations; i++) {
      const order = i % 2 === 0;
      if (order) known.push(await timeAuth("alice.wrong-secret"));
      unknown.push(await timeAuth("nobody.wrong-secret"));
      if (!order) known.push(await timeAuth("alice.wrong-secret"));
      raw.push(await timeRaw());
    }
    const k = stats(known);
    const u = stats(unknown);
    const r = stats(raw);
    const result = {
      bench: "auth-timing",
      date: new Date().toISOString(),
      loadavg: loadavg(),
      iterations,
      knownNameWrongSecret401: k,
      unknownName401: u,
      rawEtcdGetOfShardKey: r,
      ratioKnownToUnknownP50: ratio(k.p50, u.p50),
      ratioKnownToUnknownMean: ratio(k.mean, u.mean),
      ratioKnownToRawP50: ratio(k.p50, r.p50),
      note: "401 round trips through the whole API (HTTP, auth middleware: one etcd read, one record parse, one constant-time compare) vs one raw etcd read by the same process",
    };
    await mkdir(join(__dirname, "results"), { recursive: true });
    await writeFile(
      join(__dirname, "results", "auth-timing.json"),
      `${JSON.stringify(result, null, 2)}\n`,
    );
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await scheduler.close();
    await etcd.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
