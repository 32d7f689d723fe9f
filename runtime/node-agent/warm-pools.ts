/**
 * The warm pools a node agent keeps: one per image run here, refilled after each run and released
 * once the image has not run for a while.
 */
import { logger } from "../lib/logger";
import type { SandboxDriver } from "./driver";

/** Config of {@link WarmPools}. */
export interface WarmPoolsConfig {
  driver: SandboxDriver;
  /** Node name (for logs). */
  node: string;
  /** Warm starts kept ready per image once that image has been run; 0 = none. */
  perImage: number;
  /** An image's warm starts are released after this many seconds without a run of it. */
  idleSeconds: number;
}

/** The warm pools of one agent. */
export class WarmPools {
  readonly #config: WarmPoolsConfig;
  /** Image → when a sandbox of it last started here (epoch ms): the warm pools this agent keeps. */
  readonly #lastRun = new Map<string, number>();
  /** Images whose warm pool is being released now. */
  readonly #releasing = new Set<string>();

  constructor(config: WarmPoolsConfig) {
    this.#config = config;
  }

  /** A sandbox of `image` started here: refill its pool (and keep it). */
  ran(image: string): void {
    const { driver, node, perImage } = this.#config;
    if (perImage > 0) {
      this.#lastRun.set(image, Date.now());
      driver
        .warm(image, perImage)
        .catch((error: unknown) => logger.warn({ node, err: error }, "could not refill warm pool"));
    }
  }

  /** Releases the warm starts of images that have not run here for `idleSeconds`. */
  releaseIdle(): void {
    const { driver, node, idleSeconds } = this.#config;
    const idleBefore = Date.now() - idleSeconds * 1000;
    for (const [image, lastRun] of this.#lastRun) {
      if (lastRun > idleBefore || this.#releasing.has(image)) continue;
      this.#releasing.add(image);
      logger.info({ node, image, idleSeconds }, "releasing the warm pool of an idle image");
      driver
        .warm(image, 0)
        .then(
          // Forgotten only once released (a run meanwhile made it fresh again: keep it).
          () => {
            if (this.#lastRun.get(image) === lastRun) this.#lastRun.delete(image);
          },
          (error: unknown) =>
            logger.warn({ node, err: error, image }, "could not release warm pool; retrying"),
        )
        .finally(() => this.#releasing.delete(image));
    }
  }
}
