/**
 * The level-triggered pass loop that the runtime's long-running loops share (the node agent's
 * reconcile, the placer's placement pass). Retry timing: `backoff.ts`.
 */
import { backoffDelay } from "./backoff";

/** Config of {@link PassRunner}. */
export interface PassRunnerConfig {
  /** One pass: reads the whole state and acts on it (level-triggered), so passes can coalesce. */
  pass: () => Promise<void>;
  /** Whether passes may run now (e.g. not closed, still leading); checked before each pass. */
  active: () => boolean;
  /** Called with a failed pass's error, before the retry. */
  onError: (error: Error) => void;
  /** Delay before a failed pass is retried, ms (jittered: `backoff.ts`). */
  retryMs: number;
  /**
   * Each further failure in a row doubles the delay, up to this many ms (default 5000): a long
   * etcd outage is retried for as long as it lasts, without every agent hammering it at once.
   */
  maxRetryMs?: number;
}

/**
 * Runs `pass` on request: never two at once; requests made while a pass runs coalesce into one
 * more pass after it; a failed pass is retried after a jittered, growing delay, while `active()`
 * (never given up: what a pass does is retried until it is done).
 */
export class PassRunner {
  readonly #config: PassRunnerConfig;
  #running = false;
  #queued = false;
  #idle: Promise<void> = Promise.resolve();
  #failures = 0;

  constructor(config: PassRunnerConfig) {
    this.#config = config;
  }

  /** Ask for a pass soon (ignored while not active). */
  request(): void {
    if (!this.#config.active()) return;
    if (this.#running) {
      this.#queued = true;
      return;
    }
    this.#running = true;
    this.#idle = (async () => {
      do {
        this.#queued = false;
        try {
          await this.#config.pass();
          this.#failures = 0;
        } catch (error) {
          this.#config.onError(error instanceof Error ? error : new Error(String(error)));
          this.#queued = true;
          const delay = backoffDelay(this.#failures, {
            baseMs: this.#config.retryMs,
            maxMs: this.#config.maxRetryMs ?? 5000,
          });
          this.#failures += 1;
          await new Promise((r) => setTimeout(r, delay));
        }
      } while (this.#queued && this.#config.active());
      this.#running = false;
    })();
  }

  /** From inside a pass: run one more after it (what it saw has changed under it). */
  requeue(): void {
    this.#queued = true;
  }

  /** Resolves once no pass is running. */
  idle(): Promise<void> {
    return this.#idle;
  }
}
