/**
 * One reconcile pass of a node agent, level-triggered: it writes every state observed here that
 * etcd does not hold yet, then compares what is assigned to the node with what runs here (starting,
 * leaving or stopping sandboxes), and cleans up what is neither.
 */
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { SandboxPhase } from "../../contract/model";
import { isStoreUnavailable, TERMINAL_PHASES } from "../lib/store";
import type { AgentContext } from "./config";
import type { FinalReport } from "./final-report";
import type { SandboxRunner } from "./runner";

/** Reconcile what is assigned to this node with what runs here (see the module comment). */
export async function reconcile(ctx: AgentContext, runner: SandboxRunner): Promise<void> {
  const { sandboxes } = ctx;
  const { items, generations } = await ctx.store.listAssignments(ctx.config.name);
  const assigned = new Set(items.map((a) => a.sandboxId));
  // One sandbox whose record cannot be handled (corrupt, endless conflicts) must not hold up
  // the others: its error is kept, the pass goes on, and then fails (so it is retried with
  // backoff). etcd being away fails the pass at once: nothing else would work either.
  const failures: Error[] = [];
  const each = async (id: string, work: () => Promise<void>): Promise<void> => {
    try {
      await work();
    } catch (error) {
      if (isStoreUnavailable(error)) throw error;
      failures.push(new Error(`sandbox ${id}: ${(error as Error).message}`, { cause: error }));
    }
  };
  // Level-triggered reports first: every state observed here that etcd does not hold yet.
  for (const [id, local] of sandboxes.entries("local")) {
    local.generation ??= generations.get(id);
    if (local.unreported && local.generation !== undefined)
      await each(id, () => runner.writeRunning(id, local));
  }
  for (const [id, report] of sandboxes.entries("final")) {
    if (report.written) continue;
    if (!assigned.has(id) && !sandboxes.has(id, "incoming")) {
      // Its assignment is gone (deleted, or failed by the placer): nothing to report any more.
      report.written = true;
      continue;
    }
    await each(id, () => runner.writeFinal(id, report));
  }
  for (const id of assigned) {
    await each(id, () => reconcileAssigned(ctx, runner, id, generations.get(id)!));
  }
  await reconcileRest(ctx, runner, assigned);
  if (failures.length > 0) {
    throw new AggregateError(failures, failures.map((f) => f.message).join("; "));
  }
}

/** One sandbox assigned here: leave it, start it, or report its earlier run as over. */
async function reconcileAssigned(
  ctx: AgentContext,
  runner: SandboxRunner,
  id: string,
  generation: string,
): Promise<void> {
  const { sandboxes } = ctx;
  const name = ctx.config.name;
  sandboxes.delete(id, "incoming");
  if (sandboxes.has(id, "local") || sandboxes.has(id, "starting")) return;
  const ended = sandboxes.get(id, "final");
  if (ended) {
    if (ended.generation === null || ended.generation === generation) return;
    // A report of an earlier assignment with the same id (deleted and created again).
    sandboxes.delete(id, "final");
    await rm(runner.sandboxDir(id), { recursive: true, force: true });
  }
  const found = await ctx.store.getSandbox(id);
  if (!found || found.value.status.node !== name) return;
  const phase = found.value.status.phase;
  if (TERMINAL_PHASES.has(phase)) {
    sandboxes.set(id, "final", {
      generation,
      phase: phase as FinalReport["phase"],
      written: true,
    });
    return;
  }
  if (phase === SandboxPhase.Migrating) return;
  sandboxes.set(id, "known", found);
  if (phase !== SandboxPhase.Scheduled) {
    // `starting` or `running` here, yet this process does not run it: an earlier agent on
    // this node began it and died with it (its sandboxes die with it). A run that began is
    // never started again.
    await runner.recordFinal(id, generation, {
      phase: SandboxPhase.Failed,
      reason: `interrupted: the node agent on ${name} restarted while the sandbox was ${phase}; a run that began is never started again`,
    });
    return;
  }
  runner.begin(found.value, generation);
}

/** The rest of a pass: migration arrivals, sandboxes no longer assigned, files. */
async function reconcileRest(
  ctx: AgentContext,
  runner: SandboxRunner,
  assigned: ReadonlySet<string>,
): Promise<void> {
  const { events, sandboxes } = ctx;
  // An arrival whose migration is over without its assignment coming here (the sandbox was
  // deleted, or the migration failed and it stays on its source) is stopped, not kept forever.
  for (const id of sandboxes.ids("incoming")) {
    if (assigned.has(id)) continue;
    const found = await ctx.store.getSandbox(id);
    if (found?.value.status.phase === SandboxPhase.Migrating) continue;
    await runner.abandonIncoming(id);
  }
  for (const [id, local] of sandboxes.entries("local")) {
    if (assigned.has(id) || sandboxes.has(id, "incoming")) continue;
    local.detached = true;
    sandboxes.delete(id, "local");
    await local.running.stop().catch((error: unknown) => events.emit("error", error as Error));
    events.emit("stopped", { id });
  }
  for (const [id, report] of sandboxes.entries("final"))
    if (!assigned.has(id) && report.written) sandboxes.delete(id, "final");
  for (const id of sandboxes.ids("known"))
    if (!assigned.has(id) && !sandboxes.has(id, "local")) sandboxes.delete(id, "known");
  // Clean up the files of every sandbox that is neither assigned nor running here.
  const dirs = await readdir(join(ctx.config.dataDir, "sandboxes")).catch(() => [] as string[]);
  for (const id of dirs) {
    if (
      assigned.has(id) ||
      sandboxes.has(id, "local") ||
      sandboxes.has(id, "incoming") ||
      sandboxes.has(id, "starting") ||
      sandboxes.has(id, "final")
    )
      continue;
    await rm(runner.sandboxDir(id), { recursive: true, force: true });
  }
}
