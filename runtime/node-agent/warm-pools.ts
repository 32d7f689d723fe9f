/**
 * The warm pools a node agent keeps: one per image run here, refilled after each run and released
 * once the image has not run for a while, or when more images than `maxImages` have run since
 * (the least recently run is released first): a caller running many distinct images does not
 * make the node hold a warm sandbox (a paused VM: memory) for each.
 */
import { logger } from "../lib/logger";
import type { RegistryAccess } from "../../contract/model";
import type { SandboxDriver } from "./driver";
import { preparedImageKey } from "./images";

/** Config of {@link WarmPools}. */
export interface WarmPoolsConfig {
  driver: SandboxDriver;
  /** Node name (for logs). */
  node: string;
  /** Warm starts kept ready per image once that image has been run; 0 = none. */
  perImage: number;
  /** An image's warm starts are released after this many seconds without a run of it. */
  idleSeconds: number;
  /** Most images whose warm starts are kept at once; the least recently run goes first. */
  maxImages: number;
}

/** The warm pools of one agent. */
export class WarmPools {
  readonly #config: WarmPoolsConfig;
  /**
   * The pools kept, by `preparedImageKey(image, access)`: the image, how it may be fetched (a
   * shard's pool is fetched under the shard's rules), when a sandbox of it last started here.
   */
  readonly #lastRun = new Map<string, { image: string; access: RegistryAccess; at: number }>();
  /** Pools (keys of `#lastRun`) being released now. */
  readonly #releasing = new Set<string>();

  constructor(config: WarmPoolsConfig) {
    this.#config = config;
  }

  /** A sandbox of `image`, fetched with `access`, started here: refill its pool (and keep it). */
  ran(image: string, access: RegistryAccess): void {
    const { driver, node, perImage } = this.#config;
    if (perImage > 0) {
      const key = preparedImageKey(image, access);
      // Delete, then set: the map's order is the order of last runs, oldest first.
      this.#lastRun.delete(key);
      this.#lastRun.set(key, { image, access, at: Date.now() });
      driver
        .warm(image, perImage, access)
        .catch((error: unknown) => logger.warn({ node, err: error }, "could not refill warm pool"));
      for (const [oldest] of this.#lastRun) {
        if (this.#lastRun.size - this.#releasing.size <= this.#config.maxImages) break;
        if (this.#releasing.has(oldest)) continue;
        this.#release(oldest, "more images have run since");
      }
    }
  }

  /** Releases the warm starts of images that have not run here for `idleSeconds`. */
  releaseIdle(): void {
    const { idleSeconds } = this.#config;
    const idleBefore = Date.now() - idleSeconds * 1000;
    for (const [key, { at }] of this.#lastRun) {
      if (at > idleBefore || this.#releasing.has(key)) continue;
      this.#release(key, `not run for ${idleSeconds} s`);
    }
  }

  #release(key: string, why: string): void {
    const entry = this.#lastRun.get(key);
    if (!entry) return;
    const { image, access, at } = entry;
    const { driver, node } = this.#config;
    this.#releasing.add(key);
    logger.info({ node, image }, `releasing the warm pool of an image: ${why}`);
    driver
      .warm(image, 0, access)
      .then(
        // Forgotten only once released (a run meanwhile made it fresh again: keep it).
        () => {
          if (this.#lastRun.get(key)?.at === at) this.#lastRun.delete(key);
        },
        (error: unknown) =>
          logger.warn({ node, err: error, image }, "could not release warm pool; retrying"),
      )
      .finally(() => this.#releasing.delete(key));
  }
}
