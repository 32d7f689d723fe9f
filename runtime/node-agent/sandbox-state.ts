/**
 * What a node agent tracks of each sandbox, one {@link SandboxState} per id (rather than one
 * collection per kind of fact): whether it runs or is starting here, how its run here ended, an
 * arrival by migration, and the last version of its record.
 */
import type { SandboxRecord, SandboxStatus } from "../../contract/model";
import type { Versioned } from "../lib/store";
import type { RunningSandbox } from "./driver";
import type { FinalReport } from "./final-report";

/** A sandbox this agent runs. */
export interface LocalSandbox {
  readonly id: string;
  running: RunningSandbox;
  /** Set when the sandbox left this node by migration or was stopped on purpose: no status report. */
  detached: boolean;
  /** Generation of the assignment it runs for (undefined: arrived by migration, not assigned yet). */
  generation: string | undefined;
  /** The `running` status etcd does not hold yet (written by the next pass), if any. */
  unreported: Partial<SandboxStatus> | undefined;
}

/** What the agent knows of one sandbox; each fact is set and cleared on its own. */
export interface SandboxState {
  /** It runs here. */
  local?: LocalSandbox;
  /** It is being started right now (so two passes do not start one twice). */
  starting?: true;
  /**
   * Its run here is over (or was found over), and how it ended; never run again while the
   * assignment stays. A report not `written` is reported by every pass until etcd holds it.
   */
  final?: FinalReport;
  /** It is arriving by migration: protected from reconcile until its assignment shows up. */
  incoming?: Promise<RunningSandbox>;
  /** The last version of its record this agent read or wrote (a CAS guess, not truth). */
  known?: Versioned<SandboxRecord>;
}

/** Keys of {@link SandboxState}. */
export type SandboxFact = keyof SandboxState;

/** The agent's sandboxes by id; a sandbox is forgotten once no fact of it is left. */
export class SandboxStates {
  readonly #byId = new Map<string, SandboxState>();

  /** One fact of a sandbox, if set. */
  get<K extends SandboxFact>(id: string, fact: K): SandboxState[K] {
    return this.#byId.get(id)?.[fact];
  }

  /** Whether a fact of a sandbox is set. */
  has(id: string, fact: SandboxFact): boolean {
    return this.#byId.get(id)?.[fact] !== undefined;
  }

  /** Set one fact of a sandbox. */
  set<K extends SandboxFact>(id: string, fact: K, value: NonNullable<SandboxState[K]>): void {
    let state = this.#byId.get(id);
    if (!state) this.#byId.set(id, (state = {}));
    state[fact] = value;
  }

  /** Clear one fact of a sandbox. */
  delete(id: string, fact: SandboxFact): void {
    const state = this.#byId.get(id);
    if (!state) return;
    delete state[fact];
    if (Object.keys(state).length === 0) this.#byId.delete(id);
  }

  /** Clear one fact of every sandbox. */
  deleteAll(fact: SandboxFact): void {
    for (const id of [...this.#byId.keys()]) this.delete(id, fact);
  }

  /**
   * `[id, value]` of each sandbox with `fact` set. Like a Map's iterator it is live: a sandbox
   * whose fact is cleared before it is reached is skipped.
   */
  *entries<K extends SandboxFact>(fact: K): Generator<[string, NonNullable<SandboxState[K]>]> {
    for (const [id, state] of this.#byId) {
      const value = state[fact];
      if (value !== undefined) yield [id, value];
    }
  }

  /** Ids of the sandboxes with `fact` set (a copy). */
  ids(fact: SandboxFact): string[] {
    return [...this.entries(fact)].map(([id]) => id);
  }
}
