/** Waiting for a sandbox to reach a phase, through an etcd watch (`POST /v1/sandboxes?wait=`). */
import { keys } from "../lib/keys";
import { type SandboxRecord, SandboxPhase, sandboxRecordSchema } from "../../contract/model";
import { decode, TERMINAL_PHASES, type Store, type Versioned } from "../lib/store";

/** Resolve when the sandbox reaches the wanted phase (or a terminal one), or at the deadline. */
export async function waitForPhase(
  store: Store,
  created: Versioned<SandboxRecord>,
  wait: "running" | "exited",
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ record: SandboxRecord; timedOut: boolean }> {
  const done = (r: SandboxRecord): boolean =>
    TERMINAL_PHASES.has(r.status.phase) ||
    (wait === "running" && r.status.phase === SandboxPhase.Running);
  if (done(created.value)) return { record: created.value, timedOut: false };
  const key = keys.sandbox(created.value.id);
  const watcher = await store.client
    .watch()
    .key(key)
    .startRevision(String(BigInt(created.modRevision) + 1n))
    .create();
  try {
    return await new Promise((resolve) => {
      let last = created.value;
      const finish = (timedOut: boolean): void => {
        clearTimeout(timer);
        resolve({ record: last, timedOut });
      };
      const timer = setTimeout(() => finish(true), timeoutMs);
      signal.addEventListener("abort", () => finish(true), { once: true });
      watcher.on("put", (kv) => {
        last = decode(sandboxRecordSchema, kv);
        if (done(last)) finish(false);
      });
      watcher.on("delete", () => {
        last = {
          ...last,
          status: { ...last.status, phase: SandboxPhase.Failed, reason: "deleted while waiting" },
        };
        finish(false);
      });
    });
  } finally {
    await watcher.cancel().catch(() => undefined);
  }
}
