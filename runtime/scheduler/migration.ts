/**
 * A live migration of a running sandbox to another node, driven by the scheduler: mark it
 * migrating, have the target accept, the source send, the target adopt, then move the record.
 * On any failure the target drops its copy and the record goes back to running on the source.
 * The target must fit the sandbox as placement would require (driver, labels, taints, free
 * capacity); only the platform token may migrate (the route checks), since node names, drivers
 * and fit are the platform's to know.
 */
import { ConflictError, NotFoundError, UnavailableError } from "../lib/errors";
import { type SandboxRecord, SandboxPhase } from "../../contract/model";
import type { Store, Versioned } from "../lib/store";
import type { AgentClient } from "./agent-client";
import { allocationsOf, unfitReason } from "./placement";

/** Migrate `current` (a sandbox the caller may reach) to node `targetName`; the moved record. */
export async function migrateSandbox(
  store: Store,
  agents: AgentClient,
  found: Versioned<SandboxRecord>,
  targetName: string,
): Promise<Versioned<SandboxRecord>> {
  let current = found;
  const id = current.value.id;
  const sourceName = current.value.status.node;
  if (current.value.status.phase !== SandboxPhase.Running || sourceName === undefined) {
    throw new ConflictError(
      "not_running",
      `sandbox ${id} is ${current.value.status.phase}; only running sandboxes can be migrated`,
    );
  }
  if (sourceName === targetName)
    throw new ConflictError(
      "same_node",
      `sandbox ${id} already runs on ${targetName}; name another node`,
    );
  const [source, target] = await Promise.all([
    store.getNode(sourceName),
    store.getNode(targetName),
  ]);
  if (!target)
    throw new NotFoundError(
      "not_found",
      `node ${targetName} is not registered (see GET /v1/nodes)`,
    );
  if (!source) throw new UnavailableError("node_unreachable", `source node ${sourceName} is gone`);
  if (target.driver !== source.driver) {
    throw new ConflictError(
      "driver_mismatch",
      `node ${targetName} runs ${target.driver}, the sandbox runs on ${source.driver}; pick a ${source.driver} node`,
    );
  }
  // What the target holds now (the sandbox itself is still bound to the source). A
  // placement racing this check can still overcommit the target by one sandbox (the placer's
  // next pass sees the moved record).
  const { items } = await store.listSandboxes();
  const allocated = allocationsOf(items.map((s) => s.value)).get(targetName);
  const unfit = unfitReason(target, current.value.spec, allocated);
  if (unfit !== undefined) {
    throw new ConflictError(
      "target_unfit",
      `node ${targetName} cannot take sandbox ${id}: ${unfit}; pick a node that fits (GET /v1/nodes shows labels, taints and what is allocated)`,
    );
  }
  current = await store.updateSandbox(
    {
      ...current.value,
      status: {
        ...current.value.status,
        phase: SandboxPhase.Migrating,
        updatedAt: new Date().toISOString(),
      },
    },
    current.modRevision,
  );
  let accepted = false;
  try {
    const port = await agents.acceptMigration(target.address, id);
    accepted = true;
    const targetHost = target.address.slice(0, target.address.lastIndexOf(":"));
    await agents.migrate(source.address, id, targetHost, port);
    const endpoints = await agents.adopt(target.address, id);
    return await store.moveSandbox(current, targetName, endpoints);
  } catch (error) {
    // The target must not keep a copy (the source, or nobody if it was deleted, runs it).
    if (accepted) await agents.abandonMigration(target.address, id).catch(() => undefined);
    await revertToRunning(
      store,
      id,
      `migration to ${targetName} failed: ${(error as Error).message}`,
    );
    throw error;
  }
}

/** Put a sandbox still marked migrating back to running, with the reason (best effort). */
async function revertToRunning(store: Store, id: string, reason: string): Promise<void> {
  const latest = await store.getSandbox(id);
  if (latest?.value.status.phase !== SandboxPhase.Migrating) return;
  await store
    .updateSandbox(
      {
        ...latest.value,
        status: {
          ...latest.value.status,
          phase: SandboxPhase.Running,
          reason,
          updatedAt: new Date().toISOString(),
        },
      },
      latest.modRevision,
    )
    .catch(() => undefined);
}
