/**
 * The node agent: registers `nodes/<name>` with a lease, watches `assignments/<name>/` and
 * reconciles level-triggered (every pass lists what is assigned and compares it with what runs
 * here), reports each sandbox's status by compare-and-swap, keeps each sandbox's output in a file
 * and serves it (and the migration endpoints) over a small HTTP API.
 *
 * Status reports are level-triggered too: the agent keeps the last state it observed of each of
 * its sandboxes and every reconcile pass writes what etcd does not hold yet, however long etcd is
 * away. A run starts only by moving its sandbox from `scheduled` to `starting` (a CAS guarded by
 * the assignment's generation), so a run that began is never started again, here or elsewhere;
 * an exit is written to the sandbox's directory (fsync) before it is reported, so an agent
 * restarted on the same data dir still reports it.
 */
import { EventEmitter } from "node:events";
import { mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { isDeepStrictEqual } from "node:util";
import { serve, type ServerType } from "@hono/node-server";
import { Etcd3, type Lease, type Watcher } from "etcd3";
import { z } from "zod";
import {
  ConflictError,
  ForbiddenError,
  NotFoundError,
  StaleRevisionError,
  formatZodIssues,
} from "../lib/errors";
import { keys } from "../lib/keys";
import { logger } from "../lib/logger";
import { backoffDelay, jitter } from "../lib/backoff";
import { PassRunner } from "../lib/passes";
import {
  nodeRecordSchema,
  registryAccessOf,
  type NodeRecord,
  type RegistryAccess,
  type Resources,
  type SandboxRecord,
  type SandboxStatus,
  SandboxPhase,
} from "../lib/model";
import { isStoreUnavailable, Store, TERMINAL_PHASES, type Versioned } from "../lib/store";
import type { DriverCapabilities, RunningSandbox, SandboxDriver } from "./driver";
import { isMigratingDriver } from "./driver";
import { type AgentApiHooks, createAgentApi } from "./http";
import { preparedImageKey } from "./images";

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
  /** Generation of the assignment it runs for (undefined: arrived by migration, not assigned yet). */
  generation: string | undefined;
  /** The `running` status etcd does not hold yet (written by the next pass), if any. */
  unreported: Partial<SandboxStatus> | undefined;
}

/**
 * How a run here ended, as this agent observed it: kept (in memory and in the sandbox's
 * directory) until etcd holds it or it no longer matters (the assignment is gone).
 */
const finalReportSchema = z.strictObject({
  generation: z.string().nullable(),
  phase: z.enum([SandboxPhase.Exited, SandboxPhase.Failed]),
  exitCode: z.number().int().optional(),
  reason: z.string().optional(),
});
type FinalReport = z.infer<typeof finalReportSchema> & { written: boolean };

/** The record an update wrote, kept across retries: a write whose answer was lost may have landed. */
interface WriteAttempt {
  attempted?: SandboxRecord;
}

/** Retries of a status write while etcd is away: 200 ms doubling to 5 s. */
const STATUS_WRITE_BACKOFF = { baseMs: 200, maxMs: 5000 } as const;

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
  /**
   * Ids whose run here is over (or was found over), with how it ended; never run again while the
   * assignment stays. Entries not `written` are reported by every pass until etcd holds them.
   */
  readonly #final = new Map<string, FinalReport>();
  /** Starts in flight (close waits for them). */
  readonly #startTasks = new Set<Promise<void>>();
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
  /**
   * The warm pools this agent keeps, by `preparedImageKey(image, access)`: the image, how it may
   * be fetched, and when a sandbox of it last started here (epoch ms).
   */
  readonly #warmImages = new Map<
    string,
    { image: string; access: RegistryAccess; lastRun: number }
  >();
  /** Warm pools (keys of `#warmImages`) being released now. */
  readonly #releasing = new Set<string>();
  readonly #reconciler = new PassRunner({
    pass: () => this.#reconcile(),
    active: () => !this.#abort.signal.aborted,
    onError: (error) => {
      this.events.emit("error", error);
      logger.warn({ node: this.name, err: error }, "reconcile failed; will retry");
    },
    retryMs: 300,
    maxRetryMs: 5000,
  });

  constructor(options: NodeAgentConfig) {
    // A copy: the defaults are this agent's, not written into the caller's object.
    const config = { ...options };
    config.labels ??= {};
    config.taints ??= [];
    // Refused here, naming the field, rather than registered and then skipped by every reader
    // of the node record as corrupt.
    const placement = nodeRecordSchema.pick({ labels: true, taints: true }).safeParse({
      labels: config.labels,
      taints: config.taints,
    });
    if (!placement.success) {
      throw new Error(`node agent ${config.name}: ${formatZodIssues(placement.error).join("; ")}`);
    }
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
    await this.#loadFinalReports();
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

  /**
   * Stop every sandbox here (each is reported failed: its run is over and is not repeated), write
   * the reports etcd does not hold yet (for up to `flushMs`, default 3 s), revoke the lease (the
   * node disappears at once) and disconnect.
   */
  async close(flushMs = 3000): Promise<void> {
    this.#abort.abort();
    if (this.#resync) clearInterval(this.#resync);
    await this.#watcher?.cancel().catch(() => undefined);
    await this.#reconciler.idle();
    await Promise.all([...this.#startTasks]);
    await Promise.all(
      [...this.#local.values()].map(async (local) => {
        local.detached = true;
        await local.running.stop().catch(() => undefined);
        await this.#recordFinal(local.id, local.generation, {
          phase: SandboxPhase.Failed,
          reason: `stopped: the node agent on ${this.name} shut down while the sandbox ran`,
        });
      }),
    );
    this.#local.clear();
    const flush = (async () => {
      for (const [id, report] of this.#final) {
        if (report.written) continue;
        await this.#writeFinal(id, report).catch(() => undefined);
      }
    })();
    await Promise.race([flush, sleep(flushMs)]);
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
    const { items, generations } = await this.#store.listAssignments(this.name);
    const assigned = new Set(items.map((a) => a.sandboxId));
    // One sandbox whose record cannot be handled (corrupt, endless conflicts) must not hold up
    // the others: its error is kept, the pass goes on, and then fails (so it is retried with
    // backoff). etcd being away fails the pass at once: nothing else would work either.
    const failures: Error[] = [];
    const each = async (id: string, work: () => Promise<void>): Promise<void> => {
      try {
        await work();
      } catch (error) {
        if (isStoreUnavailable(error)) throw error;
        failures.push(new Error(`sandbox ${id}: ${(error as Error).message}`, { cause: error }));
      }
    };
    // Level-triggered reports first: every state observed here that etcd does not hold yet.
    for (const [id, local] of this.#local) {
      local.generation ??= generations.get(id);
      if (local.unreported && local.generation !== undefined)
        await each(id, () => this.#writeRunning(id, local));
    }
    for (const [id, report] of this.#final) {
      if (report.written) continue;
      if (!assigned.has(id) && !this.#incoming.has(id)) {
        // Its assignment is gone (deleted, or failed by the placer): nothing to report any more.
        report.written = true;
        continue;
      }
      await each(id, () => this.#writeFinal(id, report));
    }
    for (const id of assigned) {
      await each(id, () => this.#reconcileAssigned(id, generations.get(id)!));
    }
    await this.#reconcileRest(assigned);
    if (failures.length > 0) {
      throw new AggregateError(failures, failures.map((f) => f.message).join("; "));
    }
  }

  /** One sandbox assigned here: leave it, start it, or report its earlier run as over. */
  async #reconcileAssigned(id: string, generation: string): Promise<void> {
    this.#incoming.delete(id);
    if (this.#local.has(id) || this.#starting.has(id)) return;
    const ended = this.#final.get(id);
    if (ended) {
      if (ended.generation === null || ended.generation === generation) return;
      // A report of an earlier assignment with the same id (deleted and created again).
      this.#final.delete(id);
      await rm(this.#sandboxDir(id), { recursive: true, force: true });
    }
    const found = await this.#store.getSandbox(id);
    if (!found || found.value.status.node !== this.name) return;
    const phase = found.value.status.phase;
    if (TERMINAL_PHASES.has(phase)) {
      this.#final.set(id, {
        generation,
        phase: phase as FinalReport["phase"],
        written: true,
      });
      return;
    }
    if (phase === SandboxPhase.Migrating) return;
    this.#known.set(id, found);
    if (phase !== SandboxPhase.Scheduled) {
      // `starting` or `running` here, yet this process does not run it: an earlier agent on
      // this node began it and died with it (its sandboxes die with it). A run that began is
      // never started again.
      await this.#recordFinal(id, generation, {
        phase: SandboxPhase.Failed,
        reason: `interrupted: the node agent on ${this.name} restarted while the sandbox was ${phase}; a run that began is never started again`,
      });
      return;
    }
    this.#starting.add(id);
    const task = this.#startSandbox(found.value, generation).finally(() => {
      this.#starting.delete(id);
      this.#startTasks.delete(task);
    });
    this.#startTasks.add(task);
  }

  /** The rest of a pass: migration arrivals, sandboxes no longer assigned, files. */
  async #reconcileRest(assigned: ReadonlySet<string>): Promise<void> {
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
    for (const [id, report] of this.#final)
      if (!assigned.has(id) && report.written) this.#final.delete(id);
    for (const id of this.#known.keys())
      if (!assigned.has(id) && !this.#local.has(id)) this.#known.delete(id);
    // Clean up the files of every sandbox that is neither assigned nor running here.
    const dirs = await readdir(join(this.#config.dataDir, "sandboxes")).catch(() => [] as string[]);
    for (const id of dirs) {
      if (
        assigned.has(id) ||
        this.#local.has(id) ||
        this.#incoming.has(id) ||
        this.#starting.has(id) ||
        this.#final.has(id)
      )
        continue;
      await rm(this.#sandboxDir(id), { recursive: true, force: true });
    }
  }

  /** `final.json` in a sandbox's directory: how its run here ended, until etcd holds it. */
  #finalFile(id: string): string {
    return join(this.#sandboxDir(id), "final.json");
  }

  /** Reads the final reports an earlier agent on this data dir wrote and may not have reported. */
  async #loadFinalReports(): Promise<void> {
    const dirs = await readdir(join(this.#config.dataDir, "sandboxes")).catch(() => [] as string[]);
    for (const id of dirs) {
      const text = await readFile(this.#finalFile(id), "utf8").catch(() => undefined);
      if (text === undefined) continue;
      try {
        this.#final.set(id, { ...finalReportSchema.parse(JSON.parse(text)), written: false });
      } catch (error) {
        logger.warn({ node: this.name, sandbox: id, err: error }, "ignoring a corrupt final.json");
      }
    }
  }

  /**
   * Keep how a run ended: in memory at once (so no pass mistakes it for an interrupted run), then
   * in `final.json` (written, fsynced and renamed into place), then in etcd (by this call or, if
   * etcd is away, by a later pass).
   */
  async #recordFinal(
    id: string,
    generation: string | undefined,
    end: Pick<FinalReport, "phase" | "exitCode" | "reason">,
  ): Promise<void> {
    const report: FinalReport = { generation: generation ?? null, ...end, written: false };
    this.#final.set(id, report);
    try {
      await mkdir(this.#sandboxDir(id), { recursive: true });
      const tmp = `${this.#finalFile(id)}.tmp`;
      const file = await open(tmp, "w");
      try {
        const { written: _written, ...persisted } = report;
        await file.writeFile(JSON.stringify(persisted));
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(tmp, this.#finalFile(id));
    } catch (error) {
      logger.warn({ node: this.name, sandbox: id, err: error }, "could not persist a final report");
    }
    if (this.#abort.signal.aborted) return; // close() flushes
    await this.#writeFinal(id, report).catch((error: unknown) => {
      this.events.emit("error", error as Error);
      this.requestReconcile(); // the pass retries it, with backoff, until etcd holds it
    });
  }

  /** Write a final report unless etcd holds it already or it no longer matters. */
  async #writeFinal(id: string, report: FinalReport): Promise<void> {
    if (report.written) return;
    const generation =
      report.generation ?? (await this.#store.assignmentGeneration(this.name, id)) ?? null;
    if (generation === null) return; // a migration arrival not assigned here (yet)
    report.generation = generation;
    const patch: Partial<SandboxStatus> =
      report.phase === SandboxPhase.Exited
        ? { phase: report.phase, exitCode: report.exitCode, reason: undefined }
        : { phase: report.phase, reason: report.reason };
    await this.#report(id, generation, (s) => (TERMINAL_PHASES.has(s.phase) ? undefined : patch));
    // Written, or refused because it no longer applies (record gone, final already, the
    // assignment replaced): either way there is nothing left to write.
    report.written = true;
  }

  /** Write the `running` status of a local sandbox, if etcd does not hold it yet. */
  async #writeRunning(id: string, local: LocalSandbox): Promise<void> {
    const patch = local.unreported;
    if (!patch || local.generation === undefined) return;
    await this.#report(id, local.generation, (s) =>
      s.phase === SandboxPhase.Starting ? patch : undefined,
    );
    if (local.unreported === patch) local.unreported = undefined;
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

  async #startSandbox(record: SandboxRecord, generation: string): Promise<void> {
    const id = record.id;
    // The claim: `scheduled` → `starting`, by CAS on the record and the assignment's generation.
    // Only the writer of that transition runs the sandbox; the placer reschedules only what is
    // still `scheduled`. While etcd is away the claim is retried for as long as it takes (a lost
    // answer is recognised: the record then holds exactly what was written).
    const attempt: WriteAttempt = {};
    let claimed = false;
    for (let failures = 0; ; failures++) {
      if (this.#abort.signal.aborted) return;
      try {
        claimed = await this.#report(
          id,
          generation,
          (s) =>
            s.phase === SandboxPhase.Scheduled
              ? { phase: SandboxPhase.Starting, reason: undefined }
              : undefined,
          attempt,
        );
        break;
      } catch (error) {
        this.events.emit("error", error as Error);
        await sleep(backoffDelay(failures, STATUS_WRITE_BACKOFF));
      }
    }
    if (!claimed) return;
    const request = this.#request(record);
    let running: RunningSandbox;
    try {
      await mkdir(request.workDir, { recursive: true });
      await this.#config.driver.prepare(record.spec.image, registryAccessOf(record.spec));
      running = await this.#config.driver.run(request);
    } catch (error) {
      const reason = `could not start: ${(error as Error).message}`;
      logger.warn({ node: this.name, sandbox: id, err: error }, "sandbox failed to start");
      await this.#recordFinal(id, generation, { phase: SandboxPhase.Failed, reason });
      this.events.emit("finished", { id, phase: SandboxPhase.Failed });
      return;
    }
    if (this.#abort.signal.aborted) {
      await running.stop();
      await this.#recordFinal(id, generation, {
        phase: SandboxPhase.Failed,
        reason: `stopped: the node agent on ${this.name} shut down while the sandbox started`,
      });
      return;
    }
    const local = this.#adopt(id, running, generation);
    local.unreported = {
      phase: SandboxPhase.Running,
      start: running.start,
      startMillis: running.startMillis,
      endpoints: { ...running.endpoints },
    };
    await this.#writeRunning(id, local).catch((error: unknown) => {
      this.events.emit("error", error as Error);
      this.requestReconcile(); // the next pass writes it
    });
    this.events.emit("started", { id, start: running.start, startMillis: running.startMillis });
    if (this.#config.warmPerImage > 0) {
      // Warmed with the run's own access: a shard's pool is fetched under the shard's rules.
      const { image } = record.spec;
      const access = registryAccessOf(record.spec);
      this.#warmImages.set(preparedImageKey(image, access), { image, access, lastRun: Date.now() });
      this.#config.driver
        .warm(image, this.#config.warmPerImage, access)
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
    for (const [key, { image, access, lastRun }] of this.#warmImages) {
      if (lastRun > idleBefore || this.#releasing.has(key)) continue;
      this.#releasing.add(key);
      logger.info(
        { node: this.name, image, idleSeconds: this.#config.warmIdleSeconds },
        "releasing the warm pool of an idle image",
      );
      this.#config.driver
        .warm(image, 0, access)
        .then(
          // Forgotten only once released (a run meanwhile made it fresh again: keep it).
          () => {
            if (this.#warmImages.get(key)?.lastRun === lastRun) this.#warmImages.delete(key);
          },
          (error: unknown) =>
            logger.warn(
              { node: this.name, err: error, image },
              "could not release warm pool; retrying",
            ),
        )
        .finally(() => this.#releasing.delete(key));
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
  #adopt(id: string, running: RunningSandbox, generation: string | undefined): LocalSandbox {
    const local: LocalSandbox = { id, running, detached: false, generation, unreported: undefined };
    this.#local.set(id, local);
    void running.exit.then(async (exit) => {
      if (local.detached || this.#abort.signal.aborted) return;
      this.#local.delete(id);
      const phase = exit.kind === "exited" ? SandboxPhase.Exited : SandboxPhase.Failed;
      await this.#recordFinal(
        id,
        local.generation,
        exit.kind === "exited" ? { phase, exitCode: exit.code } : { phase, reason: exit.reason },
      );
      await running.stop().catch(() => undefined);
      this.events.emit("finished", { id, phase });
    });
    return local;
  }

  /**
   * Update a sandbox's status by compare-and-swap on its record and on the assignment's
   * `generation`, retrying on conflicts, and only while the sandbox is still this node's under
   * that assignment. `change` returns the fields to set, or undefined to leave it. Returns whether
   * the update was written (false: declined, or no longer this node's); throws while etcd is
   * unavailable (callers retry; `attempt` carried across retries recognises a write that landed
   * though its answer was lost).
   */
  async #report(
    id: string,
    generation: string,
    change: (status: SandboxStatus) => Partial<SandboxStatus> | undefined,
    attempt: WriteAttempt = {},
  ): Promise<boolean> {
    // First try the version this agent last read or wrote (saves a round trip on the start
    // path); a stale guess only costs a conflict and a fresh read.
    let guess = this.#known.get(id);
    for (let conflicts = 0; ;) {
      const current = guess ?? (await this.#store.getSandbox(id));
      const guessed = guess !== undefined;
      guess = undefined;
      if (!current || current.value.status.node !== this.name) return false;
      if (attempt.attempted && isDeepStrictEqual(current.value, attempt.attempted)) {
        this.#known.set(id, current);
        return true; // an earlier try landed
      }
      const patch = change(current.value.status);
      if (!patch) {
        if (guessed) continue; // the guess may be stale: re-read
        return false;
      }
      const status = { ...current.value.status, ...patch, updatedAt: new Date().toISOString() };
      for (const k of Object.keys(status) as (keyof SandboxStatus)[]) {
        if (status[k] === undefined) delete status[k];
      }
      const record: SandboxRecord = { ...current.value, status };
      attempt.attempted = JSON.parse(JSON.stringify(record)) as SandboxRecord;
      try {
        this.#known.set(
          id,
          await this.#store.updateSandboxForAssignment(
            record,
            current.modRevision,
            this.name,
            generation,
          ),
        );
        return true;
      } catch (error) {
        this.#known.delete(id);
        if (!(error instanceof StaleRevisionError)) throw error;
        if (guessed) continue;
        // Lost the CAS: the record changed, or the assignment is not this generation any more.
        if ((await this.#store.assignmentGeneration(this.name, id)) !== generation) return false;
        if (++conflicts >= 20) throw error; // a pass retries later
      }
    }
  }

  #apiHooks(): AgentApiHooks {
    return {
      logFile: (id: string) => this.logFile(id),
      isRunning: (id: string) => this.#local.has(id) || this.#starting.has(id),
      acceptMigration: async (id: string): Promise<{ port: number }> => {
        const driver = this.#config.driver;
        if (!isMigratingDriver(driver)) {
          throw new ConflictError(
            "migration_unsupported",
            `driver ${driver.name} of node ${this.name} cannot live-migrate; migrate between qemu nodes`,
          );
        }
        const found = await this.#store.getSandbox(id);
        if (!found) throw new NotFoundError("not_found", `sandbox ${id} does not exist`);
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
          throw new ForbiddenError(
            "migration_target_refused",
            `host ${host} is not the address of a registered node; a sandbox migrates only to nodes of this cluster`,
          );
        }
        const driver = this.#config.driver;
        const local = this.#local.get(id);
        if (!local)
          throw new NotFoundError("not_found", `sandbox ${id} is not running on ${this.name}`);
        if (!isMigratingDriver(driver)) {
          throw new ConflictError(
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
          throw new NotFoundError("not_found", `no migration of ${id} is arriving on ${this.name}`);
        const running = await incoming;
        // Stays in #incoming (protected from reconcile) until its assignment arrives here, or
        // reconcile / abandonMigration sees the migration is over without it.
        if (this.#incoming.get(id) !== incoming) {
          throw new ConflictError(
            "abandoned",
            `the migration of ${id} to ${this.name} was abandoned`,
          );
        }
        this.#adopt(id, running, undefined);
        return { endpoints: { ...running.endpoints } };
      },
      abandonMigration: async (id: string) => ({ abandoned: await this.#abandonIncoming(id) }),
      capabilities: () => this.#capabilities,
    };
  }
}
