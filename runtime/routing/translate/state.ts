/** What translation reads (the routing state), and what the controller asks of it. */
import type { BaselineService, SandboxRecord, ShardRecord } from "../../../contract/model";

/** What translation reads. */
export interface RoutingState {
  readonly baseline: readonly BaselineService[];
  readonly shards: readonly ShardRecord[];
  readonly sandboxes: readonly SandboxRecord[];
  /** Shards whose `expiresAt` is not after `now` are left out; absent = keep every shard. */
  readonly now?: Date;
}

/** The earliest `expiresAt` after `now` (when routes next change without an etcd event). */
export function nextExpiry(shards: readonly ShardRecord[], now: Date): Date | undefined {
  let next: number | undefined;
  for (const shard of shards) {
    const at = expiry(shard);
    if (at > now.getTime() && (next === undefined || at < next)) next = at;
  }
  return next === undefined ? undefined : new Date(next);
}

/** `shard/service` of every fork whose service is not in the baseline (such forks route nowhere). */
export function unservedForks(state: RoutingState): string[] {
  // Plain loops: the controller runs this on every change, over every shard.
  const services = new Set(state.baseline.map((b) => b.name));
  const out: string[] = [];
  for (const s of state.shards) {
    for (const service in s.forks) if (!services.has(service)) out.push(`${s.name}/${service}`);
  }
  return out;
}

/** A shard's `expiresAt` in ms, parsed once per (immutable) record. */
const expiries = new WeakMap<ShardRecord, number>();
export function expiry(record: ShardRecord): number {
  let at = expiries.get(record);
  if (at === undefined) expiries.set(record, (at = Date.parse(record.expiresAt)));
  return at;
}
