/** The node's registration: `nodes/<name>` under a lease, registered again if the lease is lost. */
import type { EventEmitter } from "node:events";
import type { Etcd3, Lease } from "etcd3";
import { jitter } from "../lib/backoff";
import { logger } from "../lib/logger";
import type { NodeRecord } from "../../contract/model";
import type { Store } from "../lib/store";
import type { NodeAgentEvents } from "./config";

/** Config of {@link NodeRegistration}. */
export interface NodeRegistrationConfig {
  client: Etcd3;
  store: Store;
  /** Lease TTL in seconds. */
  leaseTtlSeconds: number;
  /** Aborted when the agent closes: a lease lost then is not registered again. */
  signal: AbortSignal;
  events: EventEmitter<NodeAgentEvents>;
  /** The record to register, built anew for each registration. */
  record: () => NodeRecord;
}

/** One node's registration. */
export class NodeRegistration {
  readonly #config: NodeRegistrationConfig;
  #lease: Lease | undefined;

  constructor(config: NodeRegistrationConfig) {
    this.#config = config;
  }

  /** Put the node record under a new lease (kept alive); emits `registered`. */
  async register(): Promise<void> {
    const { client, store, signal, events } = this.#config;
    const record = this.#config.record();
    const lease = client.lease(this.#config.leaseTtlSeconds, { autoKeepAlive: true });
    lease.on("lost", (error) => {
      if (signal.aborted || this.#lease !== lease) return;
      events.emit("error", error);
      logger.warn({ node: record.name, err: error }, "node lease lost; registering again");
      const retry = (): void => {
        if (signal.aborted) return;
        this.register().catch((e: unknown) => {
          events.emit("error", e as Error);
          setTimeout(retry, jitter(1000)).unref();
        });
      };
      retry();
    });
    await store.putNode(record, lease);
    this.#lease = lease;
    events.emit("registered", record);
  }

  /** Revoke the lease: the node disappears at once. */
  async revoke(): Promise<void> {
    await this.#lease?.revoke();
  }
}
