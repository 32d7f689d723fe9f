/**
 * The node agent: registers `nodes/<name>` with a lease, watches `assignments/<name>/` and
 * reconciles level-triggered (every pass lists what is assigned and compares it with what runs
 * here), reports each sandbox's status by compare-and-swap, keeps each sandbox's output in a file
 * and serves it (and the migration endpoints) over a small HTTP API.
 */
import { EventEmitter } from "node:events";
import { mkdir, readdir, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { serve, type ServerType } from "@hono/node-server";
import { Etcd3, type Lease, type Watcher } from "etcd3";
import { HttpError } from "../lib/errors";
import { keys } from "../lib/keys";
import { logger } from "../lib/logger";
import { jitter, PassRunner } from "../lib/passes";
import {
  type NodeRecord,
  type Resources,
  type SandboxRecord,
  type SandboxStatus,
  SandboxPhase,
} from "../lib/model";
import { ConflictError, Store, TERMINAL_PHASES, type Versioned } from "../lib/store";
import type { DriverCapabilities, RunningSandbox, SandboxDriver } from "./driver";
import { isMigratingDriver } from "./driver";
import { type AgentApiHooks, createAgentApi } from "./http";

/** Configuration of a {@link NodeAgent}; defaults are applied in the constructor. */
export interface NodeAgentConfig {
  /** Node name (DNS label). */
  name: string;
  etcdEndpoints: string[];
  driver: SandboxDriver;
  capacity: Resources;
  /** Where sandbox work dirs and log files live. */
  dataDir: string;
  labels?: Record<string, string>;
  taints?: NodeRecord["taints"];
  /** Node lease TTL in seconds: how long a dead agent keeps its sandboxes; default 10. */
  leaseTtlSeconds?: number;
  /** Interface and port of the agent's HTTP API; default 127.0.0.1 and a free port. */
  host?: string;
  port?: number;
  /** Warm starts kept ready per image once that image has been run; default 1. */
  warmPerImage?: number;
  /**
   * An image's warm starts are released after this many seconds without a run of it, so images
   * run once do not hold paused VMs (memory) forever; default 600.
   */
  warmIdleSeconds?: number;
  /** Safety-net reconcile interval in ms; default 2000. */
  resyncMs?: number;
  /**
   * Bearer token the agent's HTTP API demands (logs, migration); the scheduler sends its agent
   * token (by default the platform token). Unset = an open API: tests on loopback only.
   */
  apiToken?: string;
}

/** Events of a {@link NodeAgent}. */
export interface NodeAgentEvents {
  registered: [NodeRecord];
  started: [{ id: string; start: "warm" | "cold"; startMillis: number }];
  finished: [{ id: string; phase: SandboxPhase }];
  stopped: [{ id: string }];
  error: [Error];
}

/** A sandbox this agent runs. */
interface LocalSandbox {
  readonly id: string;
  running: RunningSandbox;
  /** Set when the sandbox left this node by migration or was stopped on purpose: no status report. */
  detached: boolean;
}

/** The agent of one node. */
export class NodeAgent {
  readonly events = new EventEmitter<NodeAgentEvents>();
  readonly #config: Required<NodeAgentConfig>;
  readonly #client: Etcd3;
  readonly #store: Store;
  readonly #abort = new AbortController();
  readonly #local = new Map<string, LocalSandbox>();
  /** Ids being started right now (so two passes do not start one twice). */
  readonly #starting = new Set<string>();
  /** Ids whose sandbox finished here; not run again while the assignment stays. */
  readonly #finished = new Set<string>();
  /** Ids arriving by migration, protected from reconcile until their assignment shows up. */
  readonly #incoming = new Map<string, Promise<RunningSandbox>>();
  /** The last version of each of its sandboxes this agent read or wrote (a CAS guess, not truth). */
  readonly #known = new Map<string, Versioned<SandboxRecord>>();
  #capabilities: DriverCapabilities | undefined;
  #lease: Lease | undefined;
  #watcher: Watcher | undefined;
  #server: ServerType | undefined;
  #address = "";
  #resync: NodeJS.Timeout | undefined;
  /** Image → when a sandbox of it last started here (epoch ms): the warm pools this agent keeps. */
  readonly #warmImages = new Map<string, number>();
  /** Images whose warm pool is being released now. */
  readonly #releasing = new Set<string>();
  readonly #reconciler = new PassRunner({
    pass: () => this.#reconcile(),
    active: () => !this.#abort.signal.aborted,
    onError: (error) => {
      this.events.emit("error", error);
      logger.warn({ node: this.name, err: error }, "reconcile failed; will retry");
    },
    retryMs: 300,
  });

  constructor(config: NodeAgentConfig) {
    config.labels ??= {};
    config.taints ??= [];
    config.leaseTtlSeconds ??= 10;
    config.host ??= "127.0.0.1";
    config.port ??= 0;
    config.warmPerImage ??= 1;
    config.warmIdleSeconds ??= 600;
    config.resyncMs ??= 2000;
    this.#config = config as Required<NodeAgentConfig>;
    this.#client = new Etcd3({ hosts: config.etcdEndpoints });
    this.#store = new Store(this.#client);
  }

  get name(): string {
    return this.#config.name;
  }

  /** host:port of the agent's HTTP API (after start). */
  get address(): string {
    return this.#address;
  }

  /** What the driver reported when probed (after start). */
  get capabilities(): DriverCapabilities | undefined {
    return this.#capabilities;
  }

  get driver(): SandboxDriver {
    return this.#config.driver;
  }

  /** Ids of the sandboxes running here now. */
  get running(): string[] {
    return [...this.#local.keys()];
  }

  /** Probe the driver, serve the HTTP API, register the node and start reconciling. */
  async start(): Promise<void> {
    const probe = await this.#config.driver.probe();
    if (!probe.usable) {
      throw new Error(
        `driver ${this.#config.driver.name} is not usable on this host: ${probe.reason}`,
      );
    }
    this.#capabilities = probe.capabilities;
    for (const note of probe.capabilities.notes) logger.info({ node: this.name }, note);
    await mkdir(join(this.#config.dataDir, "sandboxes"), { recursive: true });
    const app = createAgentApi(this.#apiHooks(), this.#config.apiToken);
    this.#server = await new Promise<ServerType>((resolve) => {
      const s = serve(
        { fetch: app.fetch, hostname: this.#config.host, port: this.#config.port },
        () => resolve(s),
      );
    });
    this.#address = `${this.#config.host}:${(this.#server.address() as AddressInfo).port}`;
    await this.#register();
    this.#watcher = await this.#client.watch().prefix(keys.assignmentsPrefix(this.name)).create();
    this.#watcher.on("put", () => this.requestReconcile());
    this.#watcher.on("delete", () => this.requestReconcile());
    this.#watcher.on("error", (error) => this.events.emit("error", error));
    this.#resync = setInterval(() => {
      this.requestReconcile();
      this.#releaseIdleWarmPools();
    }, this.#config.resyncMs);
    this.#resync.unref();
    this.requestReconcile();
  }

  /** Stop every sandbox here, revoke the lease (the node disappears at once) and disconnect. */
  async close(): Promise<void> {
    this.#abort.abort();
    if (this.#resync) clearInterval(this.#resync);
    await this.#watcher?.cancel().catch(() => undefined);
    await this.#reconciler.idle();
    await Promise.all(
      [...this.#local.values()].map(async (local) => {
        local.detached = true;
        await local.running.stop().catch(() => undefined);
      }),
    );
    this.#local.clear();
    await this.#config.driver.close().catch(() => undefined);
    await this.#lease?.revoke().catch(() => undefined);
    await new Promise<void>((resolve) => {
      if (!this.#server) return resolve();
      this.#server.close(() => resolve());
      if ("closeAllConnections" in this.#server) this.#server.closeAllConnections();
    });
    this.#client.close();
  }

  async #register(): Promise<void> {
    const capabilities = this.#capabilities!;
    const record: NodeRecord = {
      name: this.name,
      address: this.#address,
      driver: capabilities.driver,
      hardwareIsolated: capabilities.hardwareIsolated,
      capacity: this.#config.capacity,
      labels: this.#config.labels,
      taints: this.#config.taints,
      registeredAt: new Date().toISOString(),
    };
    const lease = this.#client.lease(this.#config.leaseTtlSeconds, { autoKeepAlive: true });
    lease.on("lost", (error) => {
      if (this.#abort.signal.aborted || this.#lease !== lease) return;
      this.events.emit("error", error);
      logger.warn({ node: this.name, err: error }, "node lease lost; registering again");
      const retry = (): void => {
        if (this.#abort.signal.aborted) return;
        this.#register().catch((e: unknown) => {
          this.events.emit("error", e as Error);
          setTimeout(retry, jitter(1000)).unref();
        });
      };
      retry();
    });
    await this.#store.putNode(record, lease);
    this.#lease = lease;
    this.events.emit("registered", record);
  }

  /** Ask for a reconcile pass; passes never overlap and requests coalesce. */
  requestReconcile(): void {
    this.#reconciler.request();
  }

  async #reconcile(): Promise<void> {
    const { items } = await this.#store.listAssignments(this.name);
    const assigned = new Set(items.map((a) => a.sandboxId));
    for (const id of assigned) {
      this.#incoming.delete(id);
      if (this.#local.has(id) || this.#starting.has(id) || this.#finished.has(id)) continue;
      const found = await this.#store.getSandbox(id);
      if (!found || found.value.status.node !== this.name) continue;
      const phase = found.value.status.phase;
      if (TERMINAL_PHASES.has(phase)) {
        this.#finished.add(id);
        continue;
      }
      if (phase === SandboxPhase.Migrating) continue;
      this.#known.set(id, found);
      this.#starting.add(id);
      void this.#startSandbox(found.value).finally(() => this.#starting.delete(id));
    }
    // An arrival whose migration is over without its assignment coming here (the sandbox was
    // deleted, or the migration failed and it stays on its source) is stopped, not kept forever.
    for (const id of [...this.#incoming.keys()]) {
      if (assigned.has(id)) continue;
      const found = await this.#store.getSandbox(id);
      if (found?.value.status.phase === SandboxPhase.Migrating) continue;
      await this.#abandonIncoming(id);
    }
    for (const [id, local] of this.#local) {
      if (assigned.has(id) || this.#incoming.has(id)) continue;
      local.detached = true;
      this.#local.delete(id);
      await local.running
        .stop()
        .catch((error: unknown) => this.events.emit("error", error as Error));
      this.events.emit("stopped", { id });
    }
    for (const id of this.#finished) if (!assigned.has(id)) this.#finished.delete(id);
    for (const id of this.#known.keys())
      if (!assigned.has(id) && !this.#local.has(id)) this.#known.delete(id);
    // Clean up the files of every sandbox that is neither assigned nor running here.
    const dirs = await readdir(join(this.#config.dataDir, "sandboxes")).catch(() => [] as string[]);
    for (const id of dirs) {
      if (
        assigned.has(id) ||
        this.#local.has(id) ||
        this.#incoming.has(id) ||
        this.#starting.has(id)
      )
        continue;
      await rm(this.#sandboxDir(id), { recursive: true, force: true });
    }
  }

  #sandboxDir(id: string): string {
    return join(this.#config.dataDir, "sandboxes", id);
  }

  /** The log file of a sandbox on this node. */
  logFile(id: string): string {
    return join(this.#sandboxDir(id), "output.log");
  }

  #request(record: SandboxRecord) {
    return {
      id: record.id,
      spec: record.spec,
      workDir: join(this.#sandboxDir(record.id), "work"),
      logFile: this.logFile(record.id),
    };
  }

  async #startSandbox(record: SandboxRecord): Promise<void> {
    const id = record.id;
    const ok = await this.#report(id, (s) =>
      s.phase === SandboxPhase.Scheduled ||
      s.phase === SandboxPhase.Starting ||
      s.phase === SandboxPhase.Running
        ? { phase: SandboxPhase.Starting, reason: undefined }
        : undefined,
    );
    if (!ok) return;
    const request = this.#request(record);
    await mkdir(request.workDir, { recursive: true });
    let running: RunningSandbox;
    try {
      await this.#config.driver.prepare(record.spec.image);
      running = await this.#config.driver.run(request);
    } catch (error) {
      const reason = `could not start: ${(error as Error).message}`;
      logger.warn({ node: this.name, sandbox: id, err: error }, "sandbox failed to start");
      this.#finished.add(id);
      await this.#report(id, () => ({ phase: SandboxPhase.Failed, reason }));
      this.events.emit("finished", { id, phase: SandboxPhase.Failed });
      return;
    }
    if (this.#abort.signal.aborted) {
      await running.stop();
      return;
    }
    this.#adopt(id, running);
    await this.#report(id, (s) =>
      s.phase === SandboxPhase.Starting
        ? {
            phase: SandboxPhase.Running,
            start: running.start,
            startMillis: running.startMillis,
            endpoints: { ...running.endpoints },
          }
        : undefined,
    );
    this.events.emit("started", { id, start: running.start, startMillis: running.startMillis });
    if (this.#config.warmPerImage > 0) {
      this.#warmImages.set(record.spec.image, Date.now());
      this.#config.driver
        .warm(record.spec.image, this.#config.warmPerImage)
        .catch((error: unknown) =>
          logger.warn({ node: this.name, err: error }, "could not refill warm pool"),
        );
    }
    // Re-check: the assignment may have gone while we were starting.
    this.requestReconcile();
  }

  /** Releases the warm starts of images that have not run here for `warmIdleSeconds`. */
  #releaseIdleWarmPools(): void {
    const idleBefore = Date.now() - this.#config.warmIdleSeconds * 1000;
    for (const [image, lastRun] of this.#warmImages) {
      if (lastRun > idleBefore || this.#releasing.has(image)) continue;
      this.#releasing.add(image);
      logger.info(
        { node: this.name, image, idleSeconds: this.#config.warmIdleSeconds },
        "releasing the warm pool of an idle image",
      );
      this.#config.driver
        .warm(image, 0)
        .then(
          // Forgotten only once released (a run meanwhile made it fresh again: keep it).
          () => {
            if (this.#warmImages.get(image) === lastRun) this.#warmImages.delete(image);
          },
          (error: unknown) =>
            logger.warn(
              { node: this.name, err: error, image },
              "could not release warm pool; retrying",
            ),
        )
        .finally(() => this.#releasing.delete(image));
    }
  }

  /** Stops a sandbox that arrived (or is arriving) by migration and is not this node's. */
  async #abandonIncoming(id: string): Promise<boolean> {
    const incoming = this.#incoming.get(id);
    if (!incoming) return false;
    this.#incoming.delete(id);
    const local = this.#local.get(id);
    if (local) {
      local.detached = true;
      this.#local.delete(id);
    }
    // A migration still in flight fails once its source is gone, and the driver then stops the
    // VM itself; one that completed is stopped here.
    const running = await incoming.catch(() => undefined);
    if (running)
      await running.stop().catch((error: unknown) => this.events.emit("error", error as Error));
    logger.info({ node: this.name, sandbox: id }, "abandoned an incoming migration");
    this.events.emit("stopped", { id });
    return true;
  }

  /** Track a running sandbox here and report its end. */
  #adopt(id: string, running: RunningSandbox): void {
    const local: LocalSandbox = { id, running, detached: false };
    this.#local.set(id, local);
    void running.exit.then(async (exit) => {
      if (local.detached || this.#abort.signal.aborted) return;
      this.#local.delete(id);
      this.#finished.add(id);
      const phase = exit.kind === "exited" ? SandboxPhase.Exited : SandboxPhase.Failed;
      await this.#report(id, () =>
        exit.kind === "exited" ? { phase, exitCode: exit.code } : { phase, reason: exit.reason },
      );
      await running.stop().catch(() => undefined);
      this.events.emit("finished", { id, phase });
    });
  }

  /**
   * Update a sandbox's status by compare-and-swap, retrying on conflicts, and only while the
   * sandbox is still this node's. `change` returns the fields to set, or undefined to leave it.
   * Returns whether the update was written.
   */
  async #report(
    id: string,
    change: (status: SandboxStatus) => Partial<SandboxStatus> | undefined,
  ): Promise<boolean> {
    for (let attempt = 0; attempt < 20; attempt++) {
      // First try the version this agent last read or wrote (saves a round trip on the start
      // path); a stale guess only costs a conflict and a fresh read.
      let current = attempt === 0 ? this.#known.get(id) : undefined;
      if (!current) {
        try {
          current = await this.#store.getSandbox(id);
        } catch (error) {
          this.events.emit("error", error as Error);
          await new Promise((r) => setTimeout(r, jitter(200)));
          continue;
        }
      }
      if (!current || current.value.status.node !== this.name) return false;
      const patch = change(current.value.status);
      if (!patch) {
        if (attempt === 0 && this.#known.has(id)) continue; // the guess may be stale: re-read
        return false;
      }
      const status = { ...current.value.status, ...patch, updatedAt: new Date().toISOString() };
      for (const k of Object.keys(status) as (keyof SandboxStatus)[]) {
        if (status[k] === undefined) delete status[k];
      }
      try {
        this.#known.set(
          id,
          await this.#store.updateSandbox({ ...current.value, status }, current.modRevision),
        );
        return true;
      } catch (error) {
        this.#known.delete(id);
        if (!(error instanceof ConflictError)) {
          this.events.emit("error", error as Error);
          await new Promise((r) => setTimeout(r, jitter(200)));
        }
      }
    }
    return false;
  }

  #apiHooks(): AgentApiHooks {
    return {
      logFile: (id: string) => this.logFile(id),
      isRunning: (id: string) => this.#local.has(id) || this.#starting.has(id),
      acceptMigration: async (id: string): Promise<{ port: number }> => {
        const driver = this.#config.driver;
        if (!isMigratingDriver(driver)) {
          throw new HttpError(
            409,
            "migration_unsupported",
            `driver ${driver.name} of node ${this.name} cannot live-migrate; migrate between qemu nodes`,
          );
        }
        const found = await this.#store.getSandbox(id);
        if (!found) throw new HttpError(404, "not_found", `sandbox ${id} does not exist`);
        const request = this.#request(found.value);
        await mkdir(request.workDir, { recursive: true });
        const { port, sandbox } = await driver.acceptMigration(request);
        this.#incoming.set(id, sandbox);
        // A failed arrival (the driver already stopped its VM) is forgotten.
        sandbox.catch(() => {
          if (this.#incoming.get(id) === sandbox) this.#incoming.delete(id);
        });
        return { port };
      },
      migrateOut: async (id: string, host: string, port: number): Promise<void> => {
        // A sandbox's memory goes only to a node of this cluster: the host must be the address
        // of a registered node (the scheduler asks the target for the port it listens on).
        const nodeHosts = (await this.#store.listNodes()).map((n) =>
          n.address.slice(0, n.address.lastIndexOf(":")),
        );
        if (!nodeHosts.includes(host)) {
          throw new HttpError(
            403,
            "migration_target_refused",
            `host ${host} is not the address of a registered node; a sandbox migrates only to nodes of this cluster`,
          );
        }
        const driver = this.#config.driver;
        const local = this.#local.get(id);
        if (!local)
          throw new HttpError(404, "not_found", `sandbox ${id} is not running on ${this.name}`);
        if (!isMigratingDriver(driver)) {
          throw new HttpError(
            409,
            "migration_unsupported",
            `driver ${driver.name} of node ${this.name} cannot live-migrate`,
          );
        }
        local.detached = true;
        try {
          await driver.migrate(id, { host, port });
        } catch (error) {
          local.detached = false;
          throw error;
        }
        this.#local.delete(id);
      },
      adopt: async (id: string): Promise<{ endpoints: Record<string, string> }> => {
        const incoming = this.#incoming.get(id);
        if (!incoming)
          throw new HttpError(
            404,
            "not_found",
            `no migration of ${id} is arriving on ${this.name}`,
          );
        const running = await incoming;
        // Stays in #incoming (protected from reconcile) until its assignment arrives here, or
        // reconcile / abandonMigration sees the migration is over without it.
        if (this.#incoming.get(id) !== incoming) {
          throw new HttpError(
            409,
            "abandoned",
            `the migration of ${id} to ${this.name} was abandoned`,
          );
        }
        this.#adopt(id, running);
        return { endpoints: { ...running.endpoints } };
      },
      abandonMigration: async (id: string) => ({ abandoned: await this.#abandonIncoming(id) }),
      capabilities: () => this.#capabilities,
    };
  }
}
