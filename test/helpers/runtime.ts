/** Shared set-up for the runtime integration tests: real etcd, schedulers, node records. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ExecutionContext } from "ava";
import type { Etcd3, Lease } from "etcd3";
import {
  keys,
  startEtcd,
  type EtcdServer,
  type NodeRecord,
  type SandboxRecord,
} from "../../runtime/lib";
import { Store } from "../../runtime/lib/store";
import {
  startScheduler,
  type RunningScheduler,
  type SchedulerConfig,
  type SchedulerExtras,
} from "../../runtime/scheduler";
import { buildBusyboxImage } from "./images";

export const PLATFORM_TOKEN = "test-platform-token-0123456789";

/** A real etcd, stopped when the test ends. */
export async function etcdFor(t: ExecutionContext): Promise<EtcdServer> {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  return etcd;
}

/** A scheduler on that etcd, closed when the test ends (closing twice is fine). */
export async function schedulerFor(
  t: ExecutionContext,
  etcd: EtcdServer,
  config: Partial<SchedulerConfig> = {},
  extras: SchedulerExtras = {},
): Promise<RunningScheduler> {
  const scheduler = await startScheduler(
    {
      etcdEndpoints: [etcd.endpoint],
      platformToken: PLATFORM_TOKEN,
      electionTtlSeconds: 2,
      ...config,
    },
    [],
    extras,
  );
  let closed = false;
  const close = scheduler.close.bind(scheduler);
  const once = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await close();
  };
  t.teardown(once);
  return { ...scheduler, close: once };
}

/** A temp dir named `<prefix>…`, removed when the test ends. */
export async function tempDirFor(t: ExecutionContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** What most scheduler tests start from: see {@link schedulerWithImage}. */
export interface SchedulerBed {
  etcd: EtcdServer;
  /** The test's temp dir (removed at teardown). */
  dir: string;
  /** A busybox OCI layout in `dir`, as an image reference. */
  image: string;
  scheduler: RunningScheduler;
}

/** A real etcd, a temp dir `<prefix>…` with a busybox image in it, and a scheduler on the etcd. */
export async function schedulerWithImage(
  t: ExecutionContext,
  prefix: string,
): Promise<SchedulerBed> {
  const etcd = await etcdFor(t);
  const dir = await tempDirFor(t, prefix);
  const image = buildBusyboxImage(join(dir, "image"));
  const scheduler = await schedulerFor(t, etcd);
  return { etcd, dir, image, scheduler };
}

/** Register a node record bound to a lease, as an agent would (the lease is revoked at teardown). */
export async function registerNode(
  t: ExecutionContext,
  client: Etcd3,
  name: string,
  capacity: NodeRecord["capacity"],
  extra: Partial<NodeRecord> = {},
): Promise<Lease> {
  const lease = client.lease(30);
  const record: NodeRecord = {
    name,
    address: "127.0.0.1:1",
    driver: "process",
    hardwareIsolated: false,
    capacity,
    labels: {},
    taints: [],
    registeredAt: new Date().toISOString(),
    ...extra,
  };
  await new Store(client).putNode(record, lease);
  t.teardown(() => lease.revoke().catch(() => undefined));
  return lease;
}

/** API call with the platform token. */
export async function api<T = unknown>(
  base: string,
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; body: T }> {
  const response = await fetch(`${base}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${PLATFORM_TOKEN}`, "content-type": "application/json" },
  });
  return { status: response.status, body: (await response.json()) as T };
}

/** Poll until `check` returns a value (not undefined) or fail after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ""}`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every sandbox record in etcd. */
export async function allSandboxes(client: Etcd3): Promise<SandboxRecord[]> {
  return (await new Store(client).listSandboxes()).items.map((i) => i.value);
}

/** How many times each sandbox got an assignment, from etcd's full watch history. */
export async function assignmentPutsById(client: Etcd3): Promise<Map<string, string[]>> {
  // The revision to read up to is taken first, and the listeners are attached as soon as the
  // watch exists: the history replayed from revision 1 follows at once, and an event emitted
  // before its listener was attached would be lost (a round trip in between lost them all once).
  const current = (await client.get("/").exec()).header.revision;
  const puts = new Map<string, string[]>();
  const watcher = await client
    .watch()
    .prefix(keys.allAssignmentsPrefix)
    .startRevision("1")
    .create();
  await new Promise<void>((resolve) => {
    watcher.on("put", (kv) => {
      const [, node, id] = /assignments\/([^/]+)\/(.+)$/.exec(kv.key.toString()) ?? [];
      if (id && node) puts.set(id, [...(puts.get(id) ?? []), node]);
    });
    watcher.on("data", (res) => {
      if (BigInt(res.header.revision) >= BigInt(current)) resolve();
    });
    setTimeout(resolve, 2000);
  });
  await watcher.cancel();
  return puts;
}

/** A real etcd that a test kills with SIGKILL and starts again on the same data dir and ports. */
export interface RestartableEtcd {
  /** Client URL; the same across restarts. */
  readonly endpoint: string;
  /** The server now running (its client is closed on kill). */
  current(): EtcdServer;
  /** kill -9, and wait until the process is gone. */
  kill(): Promise<void>;
  /** Start again on the same data dir and ports; resolves once it answers. */
  restart(): Promise<EtcdServer>;
}

/** A {@link RestartableEtcd} with its data in `dir`, stopped when the test ends. */
export async function restartableEtcdFor(
  t: ExecutionContext,
  dir: string,
): Promise<RestartableEtcd> {
  const dataDir = join(dir, "etcd");
  let server = await startEtcd({ dataDir });
  const { clientPort, peerPort } = server;
  t.teardown(() => server.stop());
  return {
    endpoint: server.endpoint,
    current: () => server,
    async kill() {
      const child = server.process;
      server.client.close();
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
    },
    async restart() {
      server = await startEtcd({ dataDir, clientPort, peerPort, readyTimeoutMs: 30_000 });
      return server;
    },
  };
}
