/**
 * The local {@link NodeActuator}: each node is a node agent process on this machine
 * (`tsx runtime/node-agent/main.ts`), started and stopped on demand.
 */
import { join } from "node:path";
import { rm } from "node:fs/promises";
import { keys } from "../lib/keys";
import type { Store } from "../lib/store";
import {
  spawnNodeAgent,
  type SpawnNodeAgentOptions,
  type SpawnedNodeAgent,
} from "../node-agent/spawn";
import type { NodeActuator } from "./autoscaler";

/** Configuration of a {@link LocalNodeActuator}. */
export interface LocalNodeActuatorConfig {
  store: Store;
  etcdEndpoints: readonly string[];
  /** Node names are `<prefix>-<n>`; default "local". */
  prefix?: string;
  /** Parent of each node's data dir. */
  dataDir: string;
  /** Passed to every agent (driver, capacity, lease TTL, …). */
  agent?: Omit<SpawnNodeAgentOptions, "name" | "etcdEndpoints" | "dataDir">;
}

/** Starts and stops node agent processes on this machine. */
export class LocalNodeActuator implements NodeActuator {
  readonly #config: LocalNodeActuatorConfig;
  readonly #agents = new Map<string, SpawnedNodeAgent>();
  #next = 0;

  constructor(config: LocalNodeActuatorConfig) {
    config.prefix ??= "local";
    this.#config = config;
  }

  list(): Promise<string[]> {
    return Promise.resolve([...this.#agents.keys()]);
  }

  async add(): Promise<string> {
    const name = `${this.#config.prefix}-${this.#next++}`;
    const agent = await spawnNodeAgent({
      ...this.#config.agent,
      name,
      etcdEndpoints: this.#config.etcdEndpoints,
      dataDir: join(this.#config.dataDir, name),
    });
    this.#agents.set(name, agent);
    return name;
  }

  async remove(name: string): Promise<void> {
    const agent = this.#agents.get(name);
    if (!agent) throw new Error(`node ${name} was not started by this actuator`);
    this.#agents.delete(name);
    // SIGTERM: the agent stops its sandboxes and revokes its lease, so the record goes at once.
    await agent.stop();
    const deadline = Date.now() + 15_000;
    while ((await this.#config.store.client.get(keys.node(name)).exec()).kvs.length > 0) {
      if (Date.now() > deadline)
        throw new Error(`node ${name} stopped but its record is still in etcd`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await rm(join(this.#config.dataDir, name), { recursive: true, force: true });
  }

  async close(): Promise<void> {
    await Promise.all([...this.#agents.keys()].map((name) => this.remove(name)));
  }
}
