/**
 * The autoscaler: a desired node count from what is allocated, what is pending and a headroom,
 * and a loop that moves the actual count towards it through a {@link NodeActuator} (local: node
 * agent processes; on AWS: the node group's desired size). Scale-down only removes empty nodes.
 */
import { EventEmitter } from "node:events";
import { logger } from "../lib/logger";
import { type Resources, SandboxPhase } from "../../contract/model";
import { ACTIVE_PHASES, type Store } from "../lib/store";
import { jitter } from "../lib/backoff";

/** Starts and stops nodes. Every implementation passes `test/integration/scheduler/actuator-conformance.ts`. */
export interface NodeActuator {
  /** Names of the nodes this actuator manages (started and not yet removed). */
  list(): Promise<string[]>;
  /** Start one node; resolves with its name once it has registered. */
  add(): Promise<string>;
  /** Stop a node this actuator started; resolves once its node record is gone. */
  remove(name: string): Promise<void>;
  /** Stop every node it started. */
  close(): Promise<void>;
}

/** Inputs of {@link desiredNodeCount}. */
export interface DemandInput {
  /** Resources held by active sandboxes plus those asked for by pending ones. */
  demand: Resources;
  /** Capacity of one node of the group being scaled. */
  nodeCapacity: Resources;
  /** Spare fraction kept free for bursts, e.g. 0.25; default 0.2. */
  headroom?: number;
  min?: number;
  max?: number;
}

/** How many nodes the demand needs, headroom included, within [min, max]. */
export function desiredNodeCount(input: DemandInput): number {
  const headroom = input.headroom ?? 0.2;
  const need = Math.max(
    Math.ceil((input.demand.cpuMillis * (1 + headroom)) / input.nodeCapacity.cpuMillis),
    Math.ceil((input.demand.memoryMiB * (1 + headroom)) / input.nodeCapacity.memoryMiB),
  );
  return Math.min(input.max ?? Number.POSITIVE_INFINITY, Math.max(input.min ?? 0, need));
}

/** Configuration of an {@link Autoscaler}. */
export interface AutoscalerConfig {
  nodeCapacity: Resources;
  headroom?: number;
  /** Default 0 and 10. */
  min?: number;
  max?: number;
  /** Evaluation interval in ms; default 5000. */
  intervalMs?: number;
}

/** Events of an {@link Autoscaler}. */
export interface AutoscalerEvents {
  decision: [{ current: number; desired: number }];
  added: [string];
  removed: [string];
  error: [Error];
}

/** Moves the managed node count towards {@link desiredNodeCount}. */
export class Autoscaler {
  readonly events = new EventEmitter<AutoscalerEvents>();
  readonly #store: Store;
  readonly #actuator: NodeActuator;
  readonly #config: Required<AutoscalerConfig>;
  readonly #abort = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> = Promise.resolve();

  constructor(store: Store, actuator: NodeActuator, config: AutoscalerConfig) {
    this.#store = store;
    this.#actuator = actuator;
    config.headroom ??= 0.2;
    config.min ??= 0;
    config.max ??= 10;
    config.intervalMs ??= 5000;
    this.#config = config as Required<AutoscalerConfig>;
  }

  start(): void {
    const tick = (): void => {
      if (this.#abort.signal.aborted) return;
      this.#running = this.evaluate()
        .then(() => undefined)
        .catch((error: unknown) => {
          this.events.emit("error", error as Error);
          logger.warn({ err: error }, "autoscaler evaluation failed; will retry");
        })
        .finally(() => {
          if (!this.#abort.signal.aborted)
            this.#timer = setTimeout(tick, jitter(this.#config.intervalMs));
        });
    };
    tick();
  }

  async close(): Promise<void> {
    this.#abort.abort();
    if (this.#timer) clearTimeout(this.#timer);
    await this.#running;
  }

  /** One evaluation: compute the desired count and add or remove (empty) nodes. */
  async evaluate(): Promise<{ current: number; desired: number }> {
    const [{ items }, managed] = await Promise.all([
      this.#store.listSandboxes(),
      this.#actuator.list(),
    ]);
    const demand = { cpuMillis: 0, memoryMiB: 0 };
    const busy = new Set<string>();
    for (const { value } of items) {
      const { phase, node } = value.status;
      if (!ACTIVE_PHASES.has(phase) && phase !== SandboxPhase.Pending) continue;
      // A pending sandbox bigger than a whole node cannot be helped by more nodes.
      if (
        phase === SandboxPhase.Pending &&
        (value.spec.resources.cpuMillis > this.#config.nodeCapacity.cpuMillis ||
          value.spec.resources.memoryMiB > this.#config.nodeCapacity.memoryMiB)
      )
        continue;
      demand.cpuMillis += value.spec.resources.cpuMillis;
      demand.memoryMiB += value.spec.resources.memoryMiB;
      if (node !== undefined && phase !== SandboxPhase.Pending) busy.add(node);
    }
    const desired = desiredNodeCount({
      demand,
      nodeCapacity: this.#config.nodeCapacity,
      headroom: this.#config.headroom,
      min: this.#config.min,
      max: this.#config.max,
    });
    const current = managed.length;
    this.events.emit("decision", { current, desired });
    for (let n = current; n < desired && !this.#abort.signal.aborted; n++) {
      this.events.emit("added", await this.#actuator.add());
    }
    if (current > desired) {
      const idle = managed.filter((name) => !busy.has(name)).slice(0, current - desired);
      for (const name of idle) {
        await this.#actuator.remove(name);
        this.events.emit("removed", name);
      }
    }
    return { current, desired };
  }
}
