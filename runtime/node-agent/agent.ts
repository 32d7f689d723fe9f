/**
 * The node agent: registers `nodes/<name>` with a lease (`registration.ts`), watches
 * `assignments/<name>/` and reconciles level-triggered (`reconcile.ts`: every pass lists what is
 * assigned and compares it with what runs here), runs and reports each sandbox's status by
 * compare-and-swap (`runner.ts`), keeps each sandbox's output in a file and serves it (and the
 * migration endpoints) over a small HTTP API (`http.ts`, `api-hooks.ts`).
 *
 * Status reports are level-triggered too: the agent keeps the last state it observed of each of
 * its sandboxes (`sandbox-state.ts`) and every reconcile pass writes what etcd does not hold yet,
 * however long etcd is away. A run starts only by moving its sandbox from `scheduled` to
 * `starting` (a CAS guarded by the assignment's generation), so a run that began is never started
 * again, here or elsewhere; an exit is written to the sandbox's directory (fsync) before it is
 * reported, so an agent restarted on the same data dir still reports it.
 */
import { EventEmitter } from "node:events";
import { mkdir } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { serve, type ServerType } from "@hono/node-server";
import { Etcd3, type Watcher } from "etcd3";
import { keys } from "../lib/keys";
import { logger } from "../lib/logger";
import { SandboxPhase } from "../../contract/model";
import { PassRunner } from "../lib/passes";
import { Store } from "../lib/store";
import { agentApiHooks } from "./api-hooks";
import {
  resolveNodeAgentConfig,
  type AgentContext,
  type NodeAgentConfig,
  type NodeAgentEvents,
} from "./config";
import type { DriverCapabilities, SandboxDriver } from "./driver";
import { readFinalReports } from "./final-report";
import { createAgentApi } from "./http";
import { reconcile } from "./reconcile";
import { NodeRegistration } from "./registration";
import { SandboxRunner } from "./runner";
import { SandboxStates } from "./sandbox-state";

/** The agent of one node. */
export class NodeAgent {
  readonly events = new EventEmitter<NodeAgentEvents>();
  readonly #config: Required<NodeAgentConfig>;
  readonly #client: Etcd3;
  readonly #store: Store;
  readonly #abort = new AbortController();
  readonly #sandboxes = new SandboxStates();
  /** What this agent's parts share. */
  readonly #ctx: AgentContext;
  readonly #runner: SandboxRunner;
  readonly #registration: NodeRegistration;
  #capabilities: DriverCapabilities | undefined;
  #watcher: Watcher | undefined;
  #server: ServerType | undefined;
  #address = "";
  #resync: NodeJS.Timeout | undefined;
  readonly #reconciler = new PassRunner({
    pass: () => reconcile(this.#ctx, this.#runner),
    active: () => !this.#abort.signal.aborted,
    onError: (error) => {
      this.events.emit("error", error);
      logger.warn({ node: this.name, err: error }, "reconcile failed; will retry");
    },
    retryMs: 300,
    maxRetryMs: 5000,
  });

  constructor(options: NodeAgentConfig) {
    this.#config = resolveNodeAgentConfig(options);
    this.#client = new Etcd3({ hosts: this.#config.etcdEndpoints });
    this.#store = new Store(this.#client);
    this.#ctx = {
      config: this.#config,
      store: this.#store,
      signal: this.#abort.signal,
      events: this.events,
      sandboxes: this.#sandboxes,
      requestReconcile: () => this.requestReconcile(),
    };
    this.#runner = new SandboxRunner(this.#ctx);
    this.#registration = new NodeRegistration({
      client: this.#client,
      store: this.#store,
      leaseTtlSeconds: this.#config.leaseTtlSeconds,
      signal: this.#abort.signal,
      events: this.events,
      record: () => {
        const capabilities = this.#capabilities!;
        return {
          name: this.name,
          address: this.#address,
          driver: capabilities.driver,
          hardwareIsolated: capabilities.hardwareIsolated,
          capacity: this.#config.capacity,
          labels: this.#config.labels,
          taints: this.#config.taints,
          registeredAt: new Date().toISOString(),
        };
      },
    });
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
    return this.#sandboxes.ids("local");
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
    const sandboxesDir = join(this.#config.dataDir, "sandboxes");
    await mkdir(sandboxesDir, { recursive: true });
    for (const [id, report] of await readFinalReports(sandboxesDir, this.name)) {
      this.#sandboxes.set(id, "final", report);
    }
    const hooks = agentApiHooks(this.#ctx, this.#runner, () => this.#capabilities);
    const app = createAgentApi(hooks, this.#config.apiToken);
    this.#server = await new Promise<ServerType>((resolve) => {
      const s = serve(
        { fetch: app.fetch, hostname: this.#config.host, port: this.#config.port },
        () => resolve(s),
      );
    });
    this.#address = `${this.#config.host}:${(this.#server.address() as AddressInfo).port}`;
    await this.#registration.register();
    this.#watcher = await this.#client.watch().prefix(keys.assignmentsPrefix(this.name)).create();
    this.#watcher.on("put", () => this.requestReconcile());
    this.#watcher.on("delete", () => this.requestReconcile());
    this.#watcher.on("error", (error) => this.events.emit("error", error));
    this.#resync = setInterval(() => {
      this.requestReconcile();
      this.#runner.warmPools.releaseIdle();
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
    await this.#runner.idle();
    await Promise.all(
      [...this.#sandboxes.entries("local")].map(async ([id, local]) => {
        local.detached = true;
        await local.running.stop().catch(() => undefined);
        await this.#runner.recordFinal(id, local.generation, {
          phase: SandboxPhase.Failed,
          reason: `stopped: the node agent on ${this.name} shut down while the sandbox ran`,
        });
      }),
    );
    this.#sandboxes.deleteAll("local");
    const flush = (async () => {
      for (const [id, report] of this.#sandboxes.entries("final")) {
        if (report.written) continue;
        await this.#runner.writeFinal(id, report).catch(() => undefined);
      }
    })();
    await Promise.race([flush, sleep(flushMs)]);
    await this.#config.driver.close().catch(() => undefined);
    await this.#registration.revoke().catch(() => undefined);
    await new Promise<void>((resolve) => {
      if (!this.#server) return resolve();
      this.#server.close(() => resolve());
      if ("closeAllConnections" in this.#server) this.#server.closeAllConnections();
    });
    this.#client.close();
  }

  /** Ask for a reconcile pass; passes never overlap and requests coalesce. */
  requestReconcile(): void {
    this.#reconciler.request();
  }

  /** The log file of a sandbox on this node. */
  logFile(id: string): string {
    return this.#runner.logFile(id);
  }
}
