/**
 * A key held under an etcd lease kept alive, written again under a new lease when the lease is
 * lost (etcd unreachable for longer than its TTL), so a process never keeps running while its
 * registration has vanished. The one building block of the node agent's `nodes/<name>` and the
 * routing controller's `routers/<name>`.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Etcd3, Lease } from "etcd3";
import { backoffDelay, type Backoff } from "./backoff";

/** Options of {@link LeasedRegistration}. */
export interface LeasedRegistrationOptions {
  readonly client: Etcd3;
  readonly ttlSeconds: number;
  /** Aborted when the owner closes: a lease lost then is not registered again. */
  readonly signal: AbortSignal;
  /** Writes the key under `lease`; called for each registration (so the value can be fresh). */
  readonly write: (lease: Lease) => Promise<void>;
  /** Told of a lost lease (`lost`) and of each failed attempt to register again (`retry`). */
  readonly onError?: (error: Error, cause: "lost" | "retry") => void;
  /** After each registration that succeeded. */
  readonly onRegistered?: () => void;
  /** Pace of the attempts after a failure; default 200 ms doubling to 5 s. */
  readonly backoff?: Backoff;
}

const DEFAULT_BACKOFF: Backoff = { baseMs: 200, maxMs: 5000 };

/** One leased registration (see the module comment). */
export class LeasedRegistration {
  readonly #options: LeasedRegistrationOptions;
  #lease: Lease | undefined;

  constructor(options: LeasedRegistrationOptions) {
    this.#options = options;
  }

  /** Register once under a new lease; rejects when the write fails (the lease is revoked then). */
  async register(): Promise<void> {
    const { client, ttlSeconds, signal, write, onError } = this.#options;
    const lease = client.lease(ttlSeconds, { autoKeepAlive: true });
    // Set before the write: a lease lost while the write is on its way registers again too.
    this.#lease = lease;
    lease.on("lost", (error) => {
      if (signal.aborted || this.#lease !== lease) return;
      onError?.(error, "lost");
      void this.registerUntilDone();
    });
    try {
      await write(lease);
    } catch (error) {
      if (this.#lease === lease) this.#lease = undefined;
      void lease.revoke().catch(() => undefined);
      throw error;
    }
    if (signal.aborted) {
      await lease.revoke().catch(() => undefined);
      return;
    }
    this.#options.onRegistered?.();
  }

  /** Register, retrying with backoff until it succeeds or the owner closes. */
  async registerUntilDone(): Promise<void> {
    const { signal, onError } = this.#options;
    for (let attempt = 0; !signal.aborted; attempt++) {
      try {
        await this.register();
        return;
      } catch (error) {
        onError?.(error as Error, "retry");
        await sleep(backoffDelay(attempt, this.#options.backoff ?? DEFAULT_BACKOFF), undefined, {
          signal,
        }).catch(() => undefined);
      }
    }
  }

  /** Revoke the lease: the key disappears at once. */
  async revoke(): Promise<void> {
    const lease = this.#lease;
    this.#lease = undefined;
    await lease?.revoke();
  }
}
