/**
 * etcd's own history of the runtime's keys, for invariants that must hold over a whole run, not
 * only at its end: every put and delete since revision 1 (the test etcds compact after an hour,
 * so nothing of a test run is compacted), read with a watch from revision 1.
 */
import type { Etcd3 } from "etcd3";
import { keys, type SandboxRecord } from "../../runtime/lib";

/** One event of a key's history. */
export interface HistoryEvent {
  readonly type: "put" | "delete";
  readonly key: string;
  /** The value put (empty for a delete). */
  readonly value: string;
  readonly revision: bigint;
}

/** Every event under `prefix` from revision 1 up to the store's current revision, in order. */
export async function historyOf(client: Etcd3, prefix: string): Promise<HistoryEvent[]> {
  const current = BigInt((await client.get("/").exec()).header.revision);
  const events: HistoryEvent[] = [];
  const watcher = await client.watch().prefix(prefix).startRevision("1").create();
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`history of ${prefix} not read up to revision ${current} in 30 s`)),
        30_000,
      );
      watcher.on("data", (res) => {
        for (const event of res.events) {
          events.push({
            type: event.type === "Put" ? "put" : "delete",
            key: event.kv.key.toString(),
            value: event.kv.value.toString(),
            revision: BigInt(event.kv.mod_revision),
          });
        }
        if (BigInt(res.header.revision) >= current) {
          clearTimeout(timer);
          resolve();
        }
      });
      watcher.on("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  } finally {
    await watcher.cancel();
  }
  return events;
}

/** What the history says about one sandbox. */
export interface SandboxHistory {
  /** Phases in the order they were written (repeats collapsed). */
  readonly phases: string[];
  /** How many times its record was created (a put after no record). */
  readonly creations: number;
  /** Nodes it was assigned to, one per put of an assignment key. */
  readonly assignments: string[];
  /** Largest number of its assignment keys that existed at once. */
  readonly maxLiveAssignments: number;
  /** Phase of each assignment put: the sandbox's last phase before it (must be pending). */
  readonly phaseBeforeEachAssignment: string[];
}

/** Per sandbox id: its phases, creations and assignments, from etcd's history. */
export async function sandboxHistories(client: Etcd3): Promise<Map<string, SandboxHistory>> {
  const events = [
    ...(await historyOf(client, keys.sandboxesPrefix)),
    ...(await historyOf(client, keys.allAssignmentsPrefix)),
  ].sort((a, b) => (a.revision < b.revision ? -1 : a.revision > b.revision ? 1 : 0));
  type Mutable = {
    phases: string[];
    creations: number;
    assignments: string[];
    live: Set<string>;
    maxLiveAssignments: number;
    phaseBeforeEachAssignment: string[];
    exists: boolean;
  };
  const out = new Map<string, Mutable>();
  const of = (id: string): Mutable => {
    let h = out.get(id);
    if (!h) {
      h = {
        phases: [],
        creations: 0,
        assignments: [],
        live: new Set(),
        maxLiveAssignments: 0,
        phaseBeforeEachAssignment: [],
        exists: false,
      };
      out.set(id, h);
    }
    return h;
  };
  // Within one transaction (same revision) the sandbox put comes before or after the assignment
  // put depending on sort stability; the phase "before" an assignment is the last phase at a
  // strictly lower revision.
  const lastPhaseBefore = new Map<string, { revision: bigint; phase: string; prev: string }>();
  for (const event of events) {
    const sandbox = /sandboxes\/([^/]+)$/.exec(event.key);
    const assignment = /assignments\/([^/]+)\/([^/]+)$/.exec(event.key);
    if (sandbox?.[1]) {
      const h = of(sandbox[1]);
      if (event.type === "delete") {
        h.exists = false;
        continue;
      }
      if (!h.exists) h.creations += 1;
      h.exists = true;
      const phase = (JSON.parse(event.value) as SandboxRecord).status.phase;
      const last = lastPhaseBefore.get(sandbox[1]);
      lastPhaseBefore.set(sandbox[1], {
        revision: event.revision,
        phase,
        prev: last && last.revision < event.revision ? last.phase : (last?.prev ?? ""),
      });
      if (h.phases.at(-1) !== phase) h.phases.push(phase);
    } else if (assignment?.[1] && assignment[2]) {
      const [, node, id] = assignment;
      const h = of(id);
      if (event.type === "delete") {
        h.live.delete(node);
        continue;
      }
      h.assignments.push(node);
      h.live.add(node);
      h.maxLiveAssignments = Math.max(h.maxLiveAssignments, h.live.size);
      const last = lastPhaseBefore.get(id);
      h.phaseBeforeEachAssignment.push(
        last === undefined ? "" : last.revision < event.revision ? last.phase : last.prev,
      );
    }
  }
  return new Map(
    [...out].map(([id, h]) => [
      id,
      {
        phases: h.phases,
        creations: h.creations,
        assignments: h.assignments,
        maxLiveAssignments: h.maxLiveAssignments,
        phaseBeforeEachAssignment: h.phaseBeforeEachAssignment,
      },
    ]),
  );
}
