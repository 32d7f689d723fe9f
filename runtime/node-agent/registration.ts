/** The node's registration: `nodes/<name>` under a lease, registered again if the lease is lost. */
import type { EventEmitter } from "node:events";
import type { Etcd3 } from "etcd3";
import { LeasedRegistration } from "../lib/leased-registration";
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

/** One node's registration (a {@link LeasedRegistration} of its record). */
export class NodeRegistration {
  readonly #leased: LeasedRegistration;

  constructor(config: NodeRegistrationConfig) {
    let record: NodeRecord | undefined;
    this.#leased = new LeasedRegistration({
      client: config.client,
      ttlSeconds: config.leaseTtlSeconds,
      signal: config.signal,
      write: (lease) => {
        record = config.record();
        return config.store.putNode(record, lease);
      },
      onRegistered: () => {
        if (record) config.events.emit("registered", record);
      },
      onError: (error, cause) => {
        config.events.emit("error", error);
        if (cause === "lost") {
          logger.warn({ node: record?.name, err: error }, "node lease lost; registering again");
        }
      },
    });
  }

  /** Put the node record under a new lease (kept alive); emits `registered`. */
  register(): Promise<void> {
    return this.#leased.register();
  }

  /** Revoke the lease: the node disappears at once. */
  revoke(): Promise<void> {
    return this.#leased.revoke();
  }
}
