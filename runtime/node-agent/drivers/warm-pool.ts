/**
 * Pre-started sandboxes kept ready per key (an image, a snapshot), so a start can take one
 * instead of paying for a cold start. The driver says how to make one, how to throw one away and
 * whether one is still usable; the pool keeps each key at its target.
 */

/** What a {@link WarmPool} needs to know about its items. */
export interface WarmPoolItems<T> {
  /** Throw an item away (a trimmed or unwanted one, or on close). */
  discard(item: T): void;
  /** Whether an item can still be used (a dead one is skipped by `take`). */
  alive(item: T): boolean;
}

interface Pool<T> {
  target: number;
  readonly ready: T[];
  filling: number;
}

/**
 * Warm items per key. `setTarget` fills (or trims) a key's pool and resolves once it is full;
 * `take` hands out a live item; `refill` tops a pool up after a take. Items are made in parallel.
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
   * Keep `count` items of `key` ready, made by `make`: trims the extra ones, fills the missing
   * ones and resolves when the pool is full (fills already under way count towards it). Rejects
   * with the first failure of a fill.
   */
  async setTarget(key: string, count: number, make: () => Promise<T>): Promise<void> {
    const pool = this.#pool(key);
    pool.target = count;
    await Promise.allSettled(this.#filling);
    while (pool.ready.length > count) {
      const item = pool.ready.pop();
      if (item !== undefined) this.#items.discard(item);
    }
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

  /** Make the items `key`'s pool is missing, in parallel; rejects with the first failure. */
  async refill(key: string, make: () => Promise<T>): Promise<void> {
    const pool = this.#pool(key);
    const missing = pool.target - pool.ready.length - pool.filling;
    if (missing <= 0) return;
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
      if (!wanted) this.#items.discard(result.value);
      else pool.ready.push(result.value);
    }
    const failed = made.find((r) => r.status === "rejected");
    if (failed && !this.#closed) throw failed.reason;
  }

  /**
   * Stop keeping items and wait for fills in flight (what they make is discarded). The items
   * that were ready are not discarded here: the driver stops them with everything else it runs.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#pools.clear();
    await Promise.allSettled(this.#filling);
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
