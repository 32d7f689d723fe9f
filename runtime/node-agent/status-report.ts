/**
 * Writing a sandbox's status from its node: compare-and-swap on the record and on the
 * assignment's generation, so only the node the sandbox is assigned to writes it.
 */
import { isDeepStrictEqual } from "node:util";
import { StaleRevisionError } from "../lib/errors";
import type { SandboxRecord, SandboxStatus } from "../../contract/model";
import type { Store } from "../lib/store";
import type { SandboxStates } from "./sandbox-state";

/** The record an update wrote, kept across retries: a write whose answer was lost may have landed. */
export interface WriteAttempt {
  attempted?: SandboxRecord;
}

/** Retries of a status write while etcd is away: 200 ms doubling to 5 s. */
export const STATUS_WRITE_BACKOFF = { baseMs: 200, maxMs: 5000 } as const;

/**
 * Update a sandbox's status by compare-and-swap on its record and on the assignment's
 * `generation`, retrying on conflicts, and only while the sandbox is still `node`'s under
 * that assignment. `change` returns the fields to set, or undefined to leave it. Returns whether
 * the update was written (false: declined, or no longer this node's); throws while etcd is
 * unavailable (callers retry; `attempt` carried across retries recognises a write that landed
 * though its answer was lost). The version read or written is kept as the sandbox's `known`.
 */
export async function reportStatus(
  store: Store,
  node: string,
  sandboxes: SandboxStates,
  id: string,
  generation: string,
  change: (status: SandboxStatus) => Partial<SandboxStatus> | undefined,
  attempt: WriteAttempt = {},
): Promise<boolean> {
  // First try the version this agent last read or wrote (saves a round trip on the start
  // path); a stale guess only costs a conflict and a fresh read.
  let guess = sandboxes.get(id, "known");
  for (let conflicts = 0; ;) {
    const current = guess ?? (await store.getSandbox(id));
    const guessed = guess !== undefined;
    guess = undefined;
    if (!current || current.value.status.node !== node) return false;
    if (attempt.attempted && isDeepStrictEqual(current.value, attempt.attempted)) {
      sandboxes.set(id, "known", current);
      return true; // an earlier try landed
    }
    const patch = change(current.value.status);
    if (!patch) {
      if (guessed) continue; // the guess may be stale: re-read
      return false;
    }
    const status = { ...current.value.status, ...patch, updatedAt: new Date().toISOString() };
    for (const k of Object.keys(status) as (keyof SandboxStatus)[]) {
      if (status[k] === undefined) delete status[k];
    }
    const record: SandboxRecord = { ...current.value, status };
    attempt.attempted = JSON.parse(JSON.stringify(record)) as SandboxRecord;
    try {
      sandboxes.set(
        id,
        "known",
        await store.updateSandboxForAssignment(record, current.modRevision, node, generation),
      );
      return true;
    } catch (error) {
      sandboxes.delete(id, "known");
      if (!(error instanceof StaleRevisionError)) throw error;
      if (guessed) continue;
      // Lost the CAS: the record changed, or the assignment is not this generation any more.
      if ((await store.assignmentGeneration(node, id)) !== generation) return false;
      if (++conflicts >= 20) throw error; // a pass retries later
    }
  }
}
