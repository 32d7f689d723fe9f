/**
 * The routing controller: watches shards and sandboxes in etcd, translates them (with the baseline
 * services from config) into xDS resources, and pushes each new snapshot to the cache its ADS
 * server answers from. The same process runs the reapers (expired shards are deleted from etcd, so
 * their routes vanish with the next snapshot).
 */
import type { Etcd3, IKeyValue, Watcher } from "etcd3";
import { EventEmitter } from "node:events";
import type { z } from "zod";
import type { Backoff } from "../lib/backoff";
import { keyName, keys } from "../lib/keys";
import { logger as rootLogger, type Logger } from "../lib/logger";
import { LeasedRegistration } from "../lib/leased-registration";
import {
  routerRecordSchema,
  sandboxRecordSchema,
  shardRecordSchema,
  type BaselineService,
  type SandboxRecord,
  type ShardRecord,
} from "../../contract/model";
import { ShardStore } from "./shard-store";
import { GATEWAY_NODE_ID } from "../../contract";
import { forNode, nextExpiry, Translator, unservedForks, type NodeKind } from "./translate";
import { Snapshot, SnapshotCache, XdsServer } from "./xds";

/** How registering `routers/<name>` is retried while etcd does not answer. */
const REGISTER_BACKOFF: Backoff = { baseMs: 200, maxMs: 5000 };

/**
 * The cache keeps one snapshot per kind of node: the Envoy gateway (node id
 * {@link GATEWAY_NODE_ID}) gets the `ingress` listener, every other node (gRPC xDS clients) gets
 * the api_listeners.
 */
export function nodeKind(node: { id?: string }): NodeKind {
  return node.id === GATEWAY_NODE_ID ? "gateway" : "grpc";
}

/**
 * Something that deletes what has expired. The controller runs each on every tick; errors are
 * logged and retried next tick. The JIT-grant reaper (expired RoleBindings, deleted through the
 * Kubernetes API) belongs to the access-control issue and plugs in here through `reapers`.
 */
export interface Reaper {
  readonly name: string;
  /** Delete what expired at `now`; returns how many were deleted. */
  reap(now: Date): Promise<number>;
}

/** Options of {@link RoutingController}. */
export interface RoutingControllerOptions {
  readonly etcd: Etcd3;
  /** The baseline services (from config). */
  readonly baseline: readonly BaselineService[];
  /** Sandbox host domain; default `shardworks.local`. */
  domain?: string;
  /** Envoy ingress listener port; default 8080 (the EnvoyGateway default). */
  ingressPort?: number;
  /** Address Envoy's ingress listener binds; default 0.0.0.0. */
  ingressHost?: string;
  /** ADS port; default 18000 (0 = any free port). */
  xdsPort?: number;
  /** ADS bind address; default 127.0.0.1. */
  xdsHost?: string;
  /** How often the reapers run; default 1000 ms. */
  reapIntervalMs?: number;
  /** Reapers run besides the shard reaper (e.g. JIT grants). */
  extraReapers?: readonly Reaper[];
  /**
   * Register this replica as `routers/<name>` (bound to a lease) so the scheduler can ask its
   * CSDS; `address` is how the scheduler reaches it (default `127.0.0.1:<port>`).
   */
  advertise?: { name: string; address?: string; version?: string; leaseTtlSeconds?: number };
  logger?: Logger;
}

/** Events of {@link RoutingController}. */
export interface RoutingControllerEvents {
  /** A new snapshot was pushed to the cache. */
  snapshot: [{ snapshot: Snapshot; shards: number; sandboxes: number; translateMillis: number }];
  /** A reaper deleted something. */
  reaped: [{ reaper: string; count: number }];
  /** A loop failed (and will retry). */
  error: [Error];
}

interface Stored<T> {
  readonly record: T;
  readonly modRevision: string;
}

/** The controller process' core: etcd watches → translation → snapshot cache → ADS. */
export class RoutingController {
  readonly events = new EventEmitter<RoutingControllerEvents>();
  readonly cache = new SnapshotCache({ nodeKey: nodeKind });
  readonly server: XdsServer;
  readonly #options: RoutingControllerOptions;
  readonly #logger: Logger;
  readonly #translator: Translator;
  readonly #shards = new Map<string, Stored<ShardRecord>>();
  readonly #sandboxes = new Map<string, Stored<SandboxRecord>>();
  readonly #watchers: Watcher[] = [];
  readonly #abort = new AbortController();
  #rebuildQueued = false;
  #reapTimer: NodeJS.Timeout | undefined;
  #expiryTimer: NodeJS.Timeout | undefined;
  readonly #warnedUnserved = new Set<string>();
  #port = 0;
  #registration: LeasedRegistration | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: RoutingControllerOptions) {
    this.#options = options;
    this.#logger = (options.logger ?? rootLogger).child({ component: "routing-controller" });
    this.#translator = new Translator({
      ...(options.domain === undefined ? {} : { domain: options.domain }),
      ...(options.ingressPort === undefined ? {} : { ingressPort: options.ingressPort }),
      ...(options.ingressHost === undefined ? {} : { ingressHost: options.ingressHost }),
    });
    this.server = new XdsServer(this.cache, {
      logger: this.#logger,
      currentSnapshot: (node) => this.cache.getSnapshot(this.cache.nodeKey(node)),
    });
  }

  /** The ADS port (after {@link start}). */
  get port(): number {
    return this.#port;
  }

  /** The snapshot served to a kind of node (default: gRPC clients), if one was built. */
  snapshot(kind: NodeKind = "grpc"): Snapshot | undefined {
    return this.cache.getSnapshot(kind);
  }

  /** Load shards and sandboxes, serve the first snapshot, then follow etcd and start reaping. */
  async start(): Promise<number> {
    await Promise.all([
      this.#follow(keys.shardsPrefix, shardRecordSchema, this.#shards),
      this.#follow(keys.sandboxesPrefix, sandboxRecordSchema, this.#sandboxes),
    ]);
    this.#rebuild();
    this.#port = await this.server.listen(this.#options.xdsPort ?? 18_000, this.#options.xdsHost);
    await this.#register();
    this.#scheduleReap();
    this.#logger.info({ port: this.#port }, "routing controller serving ADS");
    return this.#port;
  }

  /**
   * Write `routers/<name>` under a lease kept alive. A lost lease (etcd unreachable for longer
   * than its TTL) registers again, retrying with backoff until etcd answers or the controller
   * closes, so a replica never keeps serving while invisible to the scheduler.
   */
  async #register(): Promise<void> {
    const advertise = this.#options.advertise;
    if (!advertise) return;
    const record = routerRecordSchema.parse({
      name: advertise.name,
      address: advertise.address ?? `127.0.0.1:${this.#port}`,
      ...(advertise.version === undefined ? {} : { version: advertise.version }),
      startedAt: new Date().toISOString(),
    });
    this.#registration = new LeasedRegistration({
      client: this.#options.etcd,
      ttlSeconds: advertise.leaseTtlSeconds ?? 10,
      signal: this.#abort.signal,
      backoff: REGISTER_BACKOFF,
      write: async (lease) => {
        await lease.put(keys.router(record.name)).value(JSON.stringify(record));
      },
      onError: (error, cause) =>
        this.#logger.warn(
          { err: error },
          cause === "lost"
            ? "router lease lost; registering again"
            : "could not register routers/<name>; retrying",
        ),
    });
    await this.#registration.registerUntilDone();
  }

  /** Stop watching, reaping and serving. Idempotent: a second call waits for the first. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#abort.abort();
    clearTimeout(this.#reapTimer);
    clearTimeout(this.#expiryTimer);
    // Revoking deletes `routers/<name>` at once: the scheduler stops asking this replica.
    await this.#registration?.revoke().catch(() => undefined);
    await Promise.all(this.#watchers.map((w) => w.cancel()));
    await this.server.close();
  }

  /** Run every reaper once (the timer calls this; tests may too). */
  async reapOnce(now = new Date()): Promise<void> {
    for (const reaper of [this.#shardReaper, ...(this.#options.extraReapers ?? [])]) {
      try {
        const count = await reaper.reap(now);
        if (count > 0) {
          this.#logger.info({ reaper: reaper.name, count }, "reaped expired records");
          this.events.emit("reaped", { reaper: reaper.name, count });
        }
      } catch (error) {
        this.#fail(new Error(`reaper ${reaper.name} failed`, { cause: error }));
      }
    }
  }

  /** Deletes shards past `expiresAt`, only if unchanged since read (a renewed shard survives). */
  readonly #shardReaper: Reaper = {
    name: "shards",
    reap: async (now) => {
      const store = new ShardStore(this.#options.etcd);
      let count = 0;
      for (const { record, modRevision } of [...this.#shards.values()]) {
        if (Date.parse(record.expiresAt) > now.getTime()) continue;
        if (await store.delete(record.name, modRevision)) count++;
      }
      return count;
    },
  };

  #scheduleReap(): void {
    if (this.#abort.signal.aborted) return;
    this.#reapTimer = setTimeout(() => {
      void this.reapOnce().finally(() => this.#scheduleReap());
    }, this.#options.reapIntervalMs ?? 1000);
    this.#reapTimer.unref();
  }

  /** Read a prefix, then watch it from the revision read, keeping `into` current. */
  async #follow<T>(
    prefix: string,
    schema: z.ZodType<T>,
    into: Map<string, Stored<T>>,
  ): Promise<void> {
    const { etcd } = this.#options;
    const response = await etcd.getAll().prefix(prefix).exec();
    for (const kv of response.kvs) this.#apply(kv, schema, into);
    const watcher = await etcd
      .watch()
      .prefix(prefix)
      .startRevision(String(BigInt(response.header.revision) + 1n))
      .create();
    watcher.on("put", (kv) => {
      this.#apply(kv, schema, into);
      this.#queueRebuild();
    });
    watcher.on("delete", (kv) => {
      into.delete(keyName(kv.key.toString()));
      this.#queueRebuild();
    });
    watcher.on("error", (error) =>
      this.#fail(new Error(`watch of ${prefix} failed`, { cause: error })),
    );
    this.#watchers.push(watcher);
  }

  #apply<T>(kv: IKeyValue, schema: z.ZodType<T>, into: Map<string, Stored<T>>): void {
    const key = kv.key.toString();
    const parsed = schema.safeParse(safeJson(kv.value.toString()));
    if (!parsed.success) {
      // A record another writer broke must not take every route down: skip it, loudly.
      this.#logger.error({ key, issues: parsed.error.issues }, "ignoring an invalid record");
      into.delete(keyName(key));
      return;
    }
    into.set(keyName(key), { record: parsed.data, modRevision: kv.mod_revision });
  }

  /** Coalesce a burst of etcd events into one rebuild. */
  #queueRebuild(): void {
    if (this.#rebuildQueued) return;
    this.#rebuildQueued = true;
    setImmediate(() => {
      this.#rebuildQueued = false;
      if (!this.#abort.signal.aborted) this.#rebuild();
    });
  }

  #rebuild(): void {
    try {
      const started = performance.now();
      const now = new Date();
      const state = {
        baseline: this.#options.baseline,
        shards: [...this.#shards.values()].map((s) => s.record),
        sandboxes: [...this.#sandboxes.values()].map((s) => s.record),
        now,
      };
      const resources = this.#translator.translate(state);
      const snapshots = (["gateway", "grpc"] as const).map(
        (kind) =>
          [kind, new Snapshot(forNode(resources, kind), this.cache.getSnapshot(kind))] as const,
      );
      for (const [kind, snapshot] of snapshots) {
        const problems = snapshot.inconsistencies();
        if (problems.length > 0) {
          throw new Error(`inconsistent ${kind} snapshot not served: ${problems.join("; ")}`);
        }
      }
      for (const [kind, snapshot] of snapshots) this.cache.setSnapshot(kind, snapshot);
      this.#warnUnserved(state);
      this.#scheduleExpiry(state.shards, now);
      this.events.emit("snapshot", {
        snapshot: snapshots.find(([kind]) => kind === "grpc")![1],
        shards: this.#shards.size,
        sandboxes: this.#sandboxes.size,
        translateMillis: performance.now() - started,
      });
    } catch (error) {
      this.#fail(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** Rebuild when the next shard expires: its routes go then, whenever the reaper runs. */
  #scheduleExpiry(shards: readonly ShardRecord[], now: Date): void {
    clearTimeout(this.#expiryTimer);
    const next = nextExpiry(shards, now);
    if (!next || this.#abort.signal.aborted) return;
    // setTimeout holds at most 2^31-1 ms (~24.8 days); a later expiry re-arms on that rebuild.
    const delay = Math.min(next.getTime() - now.getTime() + 1, 2 ** 31 - 1);
    this.#expiryTimer = setTimeout(() => this.#queueRebuild(), delay);
    this.#expiryTimer.unref();
  }

  /**
   * The shard API does not know the baseline (it is this controller's config), so a fork of an
   * unknown service is accepted there and routes nowhere: say so once per fork.
   */
  #warnUnserved(state: Parameters<Translator["translate"]>[0]): void {
    for (const fork of unservedForks(state)) {
      if (this.#warnedUnserved.has(fork)) continue;
      this.#warnedUnserved.add(fork);
      this.#logger.warn(
        { fork },
        `fork ${fork} names a service that is not in the baseline; it gets no route`,
      );
    }
  }

  #fail(error: Error): void {
    this.#logger.error({ err: error }, error.message);
    if (this.events.listenerCount("error") > 0) this.events.emit("error", error);
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
