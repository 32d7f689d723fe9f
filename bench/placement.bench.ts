/**
 * Placements per second with 1,000 registered nodes, against the raw primitive underneath: etcd
 * transactions of the same shape (compare a mod revision, write the sandbox and its assignment),
 * issued one after another by one client in the same run. Writes bench/results/placement.json.
 *
 *   npx tsx bench/placement.bench.ts [--nodes 1000] [--sandboxes 2000]
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { keys, startEtcd, type NodeRecord, type SandboxRecord } from "../runtime/lib";
import { Store } from "../runtime/lib/store";
import { Placer } from "../runtime/scheduler/placer";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      nodes: { type: "string", default: "1000" },
      sandboxes: { type: "string", default: "2000" },
    },
  });
  const nodeCount = Number(values.nodes);
  const sandboxCount = Number(values.sandboxes);
  const etcd = await startEtcd();
  try {
    const store = new Store(etcd.client);
    const lease = etcd.client.lease(120);
    const now = new Date().toISOString();
    for (let i = 0; i < nodeCount; i += 100) {
      await Promise.all(
        Array.from({ length: Math.min(100, nodeCount - i) }, (_, j) => {
          const record: NodeRecord = {
            name: `node-${i + j}`,
            address: "127.0.0.1:1",
            driver: "process",
            hardwareIsolated: false,
            capacity: { cpuMillis: 8000, memoryMiB: 16384 },
            labels: { zone: `z${(i + j) % 3}` },
            taints: [],
            registeredAt: now,
          };
          return store.putNode(record, lease);
        }),
      );
    }
    const spec = {
      image: "oci:/bench:latest",
      command: ["true"],
      env: {},
      resources: { cpuMillis: 100, memoryMiB: 128 },
      nodeSelector: {},
      tolerations: [],
      ports: [],
      network: false,
    };
    for (let i = 0; i < sandboxCount; i += 200) {
      await Promise.all(
        Array.from({ length: Math.min(200, sandboxCount - i) }, (_, j) => {
          const record: SandboxRecord = {
            id: `sb-${i + j}`,
            spec,
            status: { phase: "pending", endpoints: {}, updatedAt: now },
            createdAt: now,
          };
          return store.createSandbox(record);
        }),
      );
    }

    // Our path: the elected placer binds every pending sandbox (filter + score over 1,000 nodes,
    // transaction guarded by mod revision and leader key).
    const placer = new Placer(store, { electionTtlSeconds: 10, resyncMs: 60_000 });
    let placed = 0;
    const started = performance.now();
    const done = new Promise<void>((resolve) =>
      placer.events.on("placed", () => {
        if (++placed === sandboxCount) resolve();
      }),
    );
    placer.start();
    await done;
    const placerSeconds = (performance.now() - started) / 1000;
    await placer.close();

    // The raw primitive: the same transaction shape, sequentially, no placement logic.
    const raw = sandboxCount;
    for (let i = 0; i < raw; i += 200) {
      await Promise.all(
        Array.from({ length: Math.min(200, raw - i) }, (_, j) =>
          etcd.client.put(`/bench/raw/${i + j}`).value("{}"),
        ),
      );
    }
    const revisions = new Map<string, string>();
    for (const kv of (await etcd.client.getAll().prefix("/bench/raw/").exec()).kvs)
      revisions.set(kv.key.toString(), kv.mod_revision);
    const rawStarted = performance.now();
    for (let i = 0; i < raw; i++) {
      const key = `/bench/raw/${i}`;
      await etcd.client
        .if(key, "Mod", "==", revisions.get(key)!)
        .then(
          etcd.client.put(key).value(JSON.stringify({ i, phase: "scheduled" })),
          etcd.client.put(`${keys.allAssignmentsPrefix}bench/${i}`).value("{}"),
        )
        .commit();
    }
    const rawSeconds = (performance.now() - rawStarted) / 1000;
    const result = {
      bench: "placement",
      date: new Date().toISOString(),
      nodes: nodeCount,
      sandboxes: sandboxCount,
      placementsPerSecond: Math.round(sandboxCount / placerSeconds),
      rawEtcdTxnsPerSecond: Math.round(raw / rawSeconds),
      ratio: Number((sandboxCount / placerSeconds / (raw / rawSeconds)).toFixed(3)),
      note: "raw = sequential compare-mod-revision txns with two puts (the bind's shape) on one client; placements include listing state, filter/score over every node and the bind txn",
    };
    await mkdir(join(__dirname, "results"), { recursive: true });
    await writeFile(
      join(__dirname, "results", "placement.json"),
      `${JSON.stringify(result, null, 2)}\n`,
    );
    console.log(JSON.stringify(result, null, 2));
    await lease.revoke();
  } finally {
    await etcd.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
