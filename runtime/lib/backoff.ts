/**
 * Retry timing shared by every long-running loop of the runtime (reconcile and placement passes,
 * status writes, the access reaper): jittered, exponentially growing, capped delays.
 */

/**
 * A delay around `ms`, `spread` above or below it at random (±50 % by default), so that replicas
 * and retries never run in lockstep.
 */
export function jitter(ms: number, spread = 0.5): number {
  return Math.round(ms * (1 - spread + Math.random() * 2 * spread));
}

/** How a retry delay grows: {@link backoffDelay}. */
export interface Backoff {
  /** Delay after the first failure, ms. */
  readonly baseMs: number;
  /** Longest delay, ms: a long outage is retried for as long as it lasts, at this pace. */
  readonly maxMs: number;
  /** {@link jitter} spread; default 0.5 (±50 %). */
  readonly spread?: number;
}

/**
 * The delay before retry `n` (0 = the first retry, after one failure): `baseMs` doubled `n`
 * times, capped at `maxMs`, jittered.
 */
export function backoffDelay(n: number, backoff: Backoff): number {
  const ms = Math.min(backoff.baseMs * 2 ** Math.min(Math.max(n, 0), 30), backoff.maxMs);
  return jitter(ms, backoff.spread);
}
