/**
 * Pre-started sandboxes kept ready per key (an image, a snapshot), so a start can take one
 * instead of paying for a cold start. The driver says how to make one, how to throw one away and
 * whether one is still usable; the pool keeps each key at its target. The process driver's warm
 * launchers and the qemu driver's paused VMs are both kept here.
 */

/** What a {@link WarmPool} needs to know about its items. */
export interface WarmPoolItems<T> {
  /** Throw an item away (a trimmed or unwanted one, or on close); awaited if it returns a promise. */
  discard(item: T): void | Promise<void>;
  /** Whether an item can still be used (a dead one is skipped by `take` and not counted). */
  alive(item: T): boolean;
  /**
   * Make a key's missing items one after the other instead of all at once (each is a whole VM
   * restore, and the host's cores are shared). Concurrent refills of a key then share one
   * sequence. Default false.
   */
  readonly oneAtATime?: boolean;
}

interface Pool<T> {
  target: number;
  readonly ready: T[];
  filling: number;
  /** With `oneAtATime`: the refill sequence under way, which later refills join. */
  sequence?: Promise<void> | undefined;
}

/**
 * Warm items per key. `setTarget` fills (or trims) a key's pool and resolves once it is full;
 * `take` hands out a live item; `refill` tops a pool up after a take. Items are made in parallel
 * unless {@link WarmPoolItems.oneAtATime}.
 */
export class WarmPool<T> {
  readonly #items: WarmPoolItems<T>;
  readonly #pools = new Map<string, Pool<T>>();
  /** Fills in flight (for all keys): `setTarget` and `close` wait for them. */
  readonly #filling = new Set<Promise<unknown>>();
  #closed = false;

  constructor(items: WarmPoolItems<T>) {
    this.#items = items;
  }

  /**
   * Keep `count` items of `key` ready, made by `make`: trims the extra ones (and waits until
   * they are discarded), fills the missing ones and resolves when the pool is full (fills
   * already under way count towards it). Rejects with the first failure of a fill.
   */
  async setTarget(key: string, count: number, make: () => Promise<T>): Promise<void> {
    const pool = this.#pool(key);
    pool.target = count;
    await Promise.allSettled(this.#filling);
    const trimmed = pool.ready.splice(count);
    await Promise.all(trimmed.map((item) => this.#discard(item)));
    await this.refill(key, make);
    await Promise.allSettled(this.#filling);
  }

  /** A live item of `key`, or undefined (dead ones met on the way are dropped). */
  take(key: string): T | undefined {
    const pool = this.#pools.get(key);
    if (!pool) return undefined;
    let item: T | undefined;
    while ((item = pool.ready.shift()) !== undefined && !this.#items.alive(item));
    return item;
  }

  /** How many live items are ready, all keys together. */
  size(): number {
    let live = 0;
    for (const pool of this.#pools.values())
      live += pool.ready.filter((item) => this.#items.alive(item)).length;
    return live;
  }

  /**
   * Make the items `key`'s pool is missing (in parallel, or one after the other with
   * `oneAtATime`); rejects with the first failure.
   */
  async refill(key: string, make: () => Promise<T>): Promise<void> {
    const pool = this.#pool(key);
    if (!this.#items.oneAtATime) {
      await this.#fill(key, pool, make, Number.POSITIVE_INFINITY);
      return;
    }
    pool.sequence ??= (async () => {
      try {
        while (await this.#fill(key, pool, make, 1));
      } finally {
        pool.sequence = undefined;
      }
    })();
    await pool.sequence;
  }

  /**
   * Stop keeping items: discards the ready ones and waits for fills in flight (what they make
   * is discarded too).
   */
  async close(): Promise<void> {
    this.#closed = true;
    const ready = [...this.#pools.values()].flatMap((pool) => pool.ready);
    this.#pools.clear();
    await Promise.all([
      ...ready.map((item) => this.#discard(item)),
      Promise.allSettled(this.#filling),
    ]);
  }

  /**
   * Makes up to `most` of the items `pool` is missing, in parallel; false if none was missing.
   * Rejects with the first failure.
   */
  async #fill(key: string, pool: Pool<T>, make: () => Promise<T>, most: number): Promise<boolean> {
    // Dead items (a VM that exited while paused) are dropped first, as `take` would: they count
    // as missing.
    for (let i = pool.ready.length - 1; i >= 0; i -= 1) {
      if (!this.#items.alive(pool.ready[i] as T)) pool.ready.splice(i, 1);
    }
    const missing = Math.min(pool.target - pool.ready.length - pool.filling, most);
    if (missing <= 0 || this.#closed) return false;
    pool.filling += missing;
    const making = Promise.allSettled(Array.from({ length: missing }, () => make()));
    this.#filling.add(making);
    const made = await making;
    this.#filling.delete(making);
    pool.filling -= missing;
    for (const result of made) {
      if (result.status === "rejected") continue;
      const wanted =
        !this.#closed && this.#pools.get(key) === pool && pool.ready.length < pool.target;
      if (!wanted) await this.#discard(result.value);
      else pool.ready.push(result.value);
    }
    const failed = made.find((r) => r.status === "rejected");
    if (failed && !this.#closed) throw failed.reason;
    return true;
  }

  async #discard(item: T): Promise<void> {
    await this.#items.discard(item);
  }

  #pool(key: string): Pool<T> {
    let pool = this.#pools.get(key);
    if (!pool) {
      pool = { target: 0, ready: [], filling: 0 };
      this.#pools.set(key, pool);
    }
    return pool;
  }
}
