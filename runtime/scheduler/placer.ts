/**
 * The single elected placer. Every scheduler process campaigns in an etcd election; only the
 * leader places. While leading it watches nodes and sandboxes and runs level-triggered passes:
 * each pass reads the whole state from etcd, puts sandboxes of vanished nodes that had not started
 * back to pending (and fails those that had: a run is never repeated), and binds every pending
 * sandbox it can fit. Binds are transactions guarded by the sandbox's mod
 * revision and the leader's election key, so even a deposed leader cannot double-place.
 */
import { EventEmitter } from "node:events";
import { type Campaign, Election, type Watcher } from "etcd3";
import { setTimeout as sleep } from "node:timers/promises";
import { keys } from "../lib/keys";
import { logger } from "../lib/logger";
import { jitter } from "../lib/backoff";
import { PassRunner } from "../lib/passes";
import { SandboxPhase } from "../../contract/model";
import { StaleRevisionError } from "../lib/errors";
import { ACTIVE_PHASES, type Store } from "../lib/store";
import { addResources, allocationsOf, placeSandbox, PlacementStrategy } from "./placement";
import { metrics } from "./metrics";

/** Configuration of a {@link Placer}. */
export interface PlacerConfig {
  /** This process's name in the election; default `placer-<pid>`. */
  name?: string;
  /** Election lease TTL in seconds (how fast a dead leader is replaced); default 5. */
  electionTtlSeconds?: number;
  /** Default bin-pack. */
  strategy?: PlacementStrategy;
  /** Safety-net pass interval while leading, in ms (watches drive the normal case); default 2000. */
  resyncMs?: number;
}

/** Events of a {@link Placer}. */
export interface PlacerEvents {
  elected: [];
  deposed: [];
  placed: [{ id: string; node: string }];
  /** A sandbox that had not started yet went back to pending: its node was lost. */
  rescheduled: [{ id: string; node: string }];
  /** A sandbox whose run had begun was failed: its node was lost. */
  lost: [{ id: string; node: string }];
  error: [Error];
}

/** Campaigns for leadership and, while leader, places pending sandboxes. */
export class Placer {
  readonly events = new EventEmitter<PlacerEvents>();
  readonly #store: Store;
  readonly #config: Required<PlacerConfig>;
  #abort = new AbortController();
  #campaign: Campaign | undefined;
  #leaderKey: string | undefined;
  #watchers: Watcher[] = [];
  #resync: NodeJS.Timeout | undefined;
  readonly #passes = new PassRunner({
    pass: () => this.#pass(),
    active: () => this.leading && !this.#abort.signal.aborted,
    onError: (error) => {
      this.events.emit("error", error);
      logger.warn({ err: error }, "placement pass failed; will retry");
    },
    retryMs: 200,
  });

  constructor(store: Store, config: PlacerConfig = {}) {
    this.#store = store;
    config.name ??= `placer-${process.pid}`;
    config.electionTtlSeconds ??= 5;
    config.strategy ??= PlacementStrategy.BinPack;
    config.resyncMs ??= 2000;
    this.#config = config as Required<PlacerConfig>;
  }

  /** True while this process is the elected placer. */
  get leading(): boolean {
    return this.#leaderKey !== undefined;
  }

  /** Start campaigning; returns at once. */
  start(): void {
    this.#campaignLoop();
  }

  /** Resign (if leader) and stop every watch and timer. */
  async close(): Promise<void> {
    this.#abort.abort();
    const wasLeader = this.leading;
    await this.#stopLeading();
    const campaign = this.#campaign;
    this.#campaign = undefined;
    await campaign?.resign().catch(() => undefined);
    // A follower may be about to open its watch (its wait loop was past the resign check): keep
    // cancelling for a moment. A leader has no such watch.
    if (campaign) await cancelCampaignWatches(campaign, wasLeader ? 0 : 1000);
    await this.#passes.idle();
  }

  #campaignLoop(): void {
    if (this.#abort.signal.aborted) return;
    const election = new Election(
      this.#store.client.namespace(`${keys.placerElection}/`),
      "placer",
      this.#config.electionTtlSeconds,
    );
    const campaign = election.campaign(this.#config.name);
    this.#campaign = campaign;
    campaign.on("elected", () => {
      campaign
        .getCampaignKey()
        .then((key) => this.#startLeading(key))
        .catch((error: unknown) => this.#fail(campaign, error));
    });
    campaign.on("error", (error) => this.#fail(campaign, error));
  }

  #fail(campaign: Campaign, error: unknown): void {
    if (this.#campaign !== campaign || this.#abort.signal.aborted) return;
    this.events.emit("error", error instanceof Error ? error : new Error(String(error)));
    logger.warn({ err: error, placer: this.#config.name }, "placer campaign failed; retrying");
    this.#campaign = undefined;
    void this.#stopLeading().then(() => {
      setTimeout(() => this.#campaignLoop(), jitter(1000)).unref();
    });
    void campaign
      .resign()
      .catch(() => undefined)
      .then(() => cancelCampaignWatches(campaign));
  }

  async #startLeading(leaderKey: string): Promise<void> {
    if (this.#abort.signal.aborted) return;
    this.#leaderKey = leaderKey;
    metrics.placerLeader.set(1);
    logger.info({ placer: this.#config.name }, "elected placer");
    this.events.emit("elected");
    const client = this.#store.client;
    for (const prefix of [keys.nodesPrefix, keys.sandboxesPrefix]) {
      const watcher = await client.watch().prefix(prefix).create();
      if (this.#abort.signal.aborted || this.#leaderKey !== leaderKey) {
        await watcher.cancel();
        return;
      }
      watcher.on("put", () => this.requestPass());
      watcher.on("delete", () => this.requestPass());
      watcher.on("error", (error) => this.events.emit("error", error));
      this.#watchers.push(watcher);
    }
    this.#resync = setInterval(() => this.requestPass(), this.#config.resyncMs);
    this.#resync.unref();
    this.requestPass();
  }

  async #stopLeading(): Promise<void> {
    if (this.#resync) clearInterval(this.#resync);
    this.#resync = undefined;
    const watchers = this.#watchers;
    this.#watchers = [];
    await Promise.all(watchers.map((w) => w.cancel().catch(() => undefined)));
    if (this.#leaderKey !== undefined) {
      this.#leaderKey = undefined;
      metrics.placerLeader.set(0);
      this.events.emit("deposed");
    }
  }

  /** Ask for a placement pass soon; passes never overlap and requests coalesce. */
  requestPass(): void {
    this.#passes.request();
  }

  async #pass(): Promise<void> {
    const leaderKey = this.#leaderKey;
    if (leaderKey === undefined) return;
    const [nodes, { items: sandboxes }] = await Promise.all([
      this.#store.listNodes(),
      this.#store.listSandboxes(),
    ]);
    const live = new Set(nodes.map((n) => n.name));
    // Sandboxes bound to a lost node count there, but placement only ever looks at live nodes.
    const allocations = allocationsOf(sandboxes.map((s) => s.value));
    // Sandboxes whose node's lease expired.
    for (const sandbox of sandboxes) {
      const { status } = sandbox.value;
      if (!ACTIVE_PHASES.has(status.phase) || status.node === undefined) continue;
      if (live.has(status.node)) continue;
      // A sandbox still `scheduled` never began there (the agent starts a run only by moving it
      // to `starting`, a CAS this unbind would make fail): it is placed again. One whose run
      // began may have run in part or to the end: it is failed, never run a second time (a pod
      // bound to a lost node is not rescheduled either).
      try {
        if (status.phase === SandboxPhase.Scheduled) {
          await this.#store.unbindSandbox(
            sandbox,
            `node ${status.node} was lost before the sandbox started; rescheduling`,
            leaderKey,
          );
          metrics.rescheduled.inc();
          this.events.emit("rescheduled", { id: sandbox.value.id, node: status.node });
        } else {
          await this.#store.failLostSandbox(
            sandbox,
            `node ${status.node} was lost while the sandbox was ${status.phase}; a run that began is never started again (it may have run in part or to the end): create it again to rerun it`,
            leaderKey,
          );
          metrics.lost.inc();
          this.events.emit("lost", { id: sandbox.value.id, node: status.node });
        }
        this.#passes.requeue();
      } catch (error) {
        if (!(error instanceof StaleRevisionError)) throw error;
        this.#passes.requeue();
      }
    }
    const pending = sandboxes
      .filter((s) => s.value.status.phase === SandboxPhase.Pending)
      .sort((a, b) => a.value.createdAt.localeCompare(b.value.createdAt));
    metrics.pending.set(pending.length);
    for (const sandbox of pending) {
      if (this.#leaderKey !== leaderKey) return;
      const choice = placeSandbox(sandbox.value.spec, nodes, allocations, this.#config.strategy);
      if (!choice.node) {
        if (sandbox.value.status.reason !== choice.reason) {
          await this.#store
            .updateSandbox(
              {
                ...sandbox.value,
                status: {
                  ...sandbox.value.status,
                  reason: choice.reason,
                  updatedAt: new Date().toISOString(),
                },
              },
              sandbox.modRevision,
              leaderKey,
            )
            .catch((error: unknown) => {
              if (!(error instanceof StaleRevisionError)) throw error;
            });
        }
        continue;
      }
      const started = performance.now();
      try {
        await this.#store.bindSandbox(sandbox, choice.node.name, leaderKey);
      } catch (error) {
        if (!(error instanceof StaleRevisionError)) throw error;
        // Changed under us (deleted, or we lost leadership): the next pass sees the new state.
        this.#passes.requeue();
        continue;
      }
      metrics.placementSeconds.observe((performance.now() - started) / 1000);
      metrics.placed.inc();
      const current = allocations.get(choice.node.name) ?? { cpuMillis: 0, memoryMiB: 0 };
      allocations.set(choice.node.name, addResources(current, sandbox.value.spec.resources));
      this.events.emit("placed", { id: sandbox.value.id, node: choice.node.name });
    }
  }
}

/**
 * etcd3's `Campaign.resign()` revokes the lease but leaves a follower's watch on the candidate
 * ahead of it (its `waitForDeletes`): once etcd is gone that watch reconnects forever, and its timer
 * keeps the process alive. Cancel what the campaign's namespace still watches. etcd3 exposes no
 * way to do this, so this reaches into its private fields, defensively (absent fields: no-op).
 */
async function cancelCampaignWatches(campaign: Campaign, forMs = 0): Promise<void> {
  const internals = campaign as unknown as {
    namespace?: { watchManager?: { watchers?: Watcher[] } };
  };
  const until = Date.now() + forMs;
  for (;;) {
    const watchers = [...(internals.namespace?.watchManager?.watchers ?? [])];
    await Promise.all(
      watchers.map((watcher) =>
        Promise.race([watcher.cancel().catch(() => undefined), sleep(1000)]),
      ),
    );
    if (Date.now() >= until) return;
    await sleep(100);
  }
}
