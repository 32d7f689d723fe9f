/**
 * The runtime's state in etcd, through the key layout of `keys.ts` and the schemas of `model/`.
 * Every write that must not race is a transaction: sandboxes change by compare-and-swap on their
 * mod revision, and an assignment is written in the same transaction that marks its sandbox
 * scheduled. Scheduler, placer and node agents all go through this module.
 */
import { type Etcd3, type IKeyValue, type IOperation, isRecoverableError, type Lease } from "etcd3";
import type { z } from "zod";
import { ConflictError, StaleRevisionError, UnavailableError } from "./errors";
import { keys, keyName } from "./keys";
import { logger } from "./logger";
import {
  type AssignmentRecord,
  type NodeRecord,
  type SandboxRecord,
  SandboxPhase,
  assignmentRecordSchema,
  nodeRecordSchema,
  routerRecordSchema,
  type RouterRecord,
  sandboxRecordSchema,
} from "../../contract/model";

/** A record together with the etcd mod revision it was read at (the CAS token). */
export interface Versioned<T> {
  readonly value: T;
  readonly modRevision: string;
}

/** Phases in which a sandbox holds capacity on its node. */
export const ACTIVE_PHASES: ReadonlySet<string> = new Set([
  SandboxPhase.Scheduled,
  SandboxPhase.Starting,
  SandboxPhase.Running,
  SandboxPhase.Migrating,
]);

/** Phases a sandbox never leaves (until it is deleted). */
export const TERMINAL_PHASES: ReadonlySet<string> = new Set([
  SandboxPhase.Exited,
  SandboxPhase.Failed,
]);

/** Seconds a caller should wait before retrying while etcd is unavailable (`Retry-After`). */
export const STORE_RETRY_AFTER_SECONDS = 2;

/**
 * Whether `error` (or an error in its `cause` chain) means etcd could not be reached or did not
 * answer in time, so the same request may succeed later: etcd3's recoverable gRPC errors
 * (unavailable, deadline exceeded, …) and the open circuit breaker it reports once a host failed
 * several times in a row. A write that failed this way may or may not have been applied.
 */
export function isStoreUnavailable(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; depth++) {
    if (isRecoverableError(e) || "isBrokenCircuitError" in e) return true;
    e = e.cause;
  }
  return false;
}

/**
 * The domain error for etcd being unavailable ({@link isStoreUnavailable}), or undefined for any
 * other error; it carries `Retry-After: {@link STORE_RETRY_AFTER_SECONDS}`. Its message is fixed:
 * the client library's (etcd's address, connection states) is for the log, not for callers.
 */
export function storeUnavailableError(error: unknown): UnavailableError | undefined {
  if (!isStoreUnavailable(error)) return undefined;
  return new UnavailableError(
    "store_unavailable",
    `the state store (etcd) is unavailable; retry in ${STORE_RETRY_AFTER_SECONDS} s. A create answered this way may have been applied: retry it with the same id (409 then means it exists)`,
    { cause: error, retryAfterSeconds: STORE_RETRY_AFTER_SECONDS },
  );
}

/** Parse one etcd value with a record schema; a corrupt record names its key. */
export function decode<S extends z.ZodType>(schema: S, kv: IKeyValue): z.infer<S> {
  const key = kv.key.toString();
  let json: unknown;
  try {
    json = JSON.parse(kv.value.toString());
  } catch (error) {
    throw new Error(`etcd key ${key} does not hold JSON`, { cause: error });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new Error(`etcd key ${key} does not hold a valid record: ${parsed.error.message}`);
  }
  return parsed.data;
}

/**
 * Decode every value of a range, skipping (and logging) corrupt ones: one bad record must not take
 * down every list, the placer and the node agents with it. Reading it by key still fails loudly.
 */
function decodeEach<S extends z.ZodType, R>(
  schema: S,
  kvs: readonly IKeyValue[],
  wrap: (value: z.infer<S>, kv: IKeyValue) => R,
): R[] {
  const out: R[] = [];
  for (const kv of kvs) {
    try {
      out.push(wrap(decode(schema, kv), kv));
    } catch (error) {
      logger.error({ err: error, key: kv.key.toString() }, "skipping a corrupt etcd record");
    }
  }
  return out;
}

/** Typed access to the runtime's etcd records. */
export class Store {
  readonly client: Etcd3;

  constructor(client: Etcd3) {
    this.client = client;
  }

  // ---- sandboxes -------------------------------------------------------------------------------

  /** Create a sandbox record; {@link ConflictError} `already_exists` if the id is taken. */
  async createSandbox(record: SandboxRecord): Promise<Versioned<SandboxRecord>> {
    const key = keys.sandbox(record.id);
    const result = await this.client
      .if(key, "Create", "==", 0)
      .then(this.client.put(key).value(JSON.stringify(record)))
      .commit();
    if (!result.succeeded) {
      throw new ConflictError("already_exists", `sandbox ${record.id} already exists`);
    }
    return { value: record, modRevision: String(result.header.revision) };
  }

  /** A sandbox and its mod revision, or undefined. */
  async getSandbox(id: string): Promise<Versioned<SandboxRecord> | undefined> {
    const response = await this.client.get(keys.sandbox(id)).exec();
    const kv = response.kvs[0];
    return kv
      ? { value: decode(sandboxRecordSchema, kv), modRevision: kv.mod_revision }
      : undefined;
  }

  /** Every sandbox, with mod revisions, and the store revision of the read. */
  async listSandboxes(): Promise<{ items: Versioned<SandboxRecord>[]; revision: string }> {
    const response = await this.client.getAll().prefix(keys.sandboxesPrefix).exec();
    return {
      items: decodeEach(sandboxRecordSchema, response.kvs, (value, kv) => ({
        value,
        modRevision: kv.mod_revision,
      })),
      revision: response.header.revision,
    };
  }

  /** Replace a sandbox if it is still at `modRevision`; {@link StaleRevisionError} otherwise. */
  async updateSandbox(
    record: SandboxRecord,
    modRevision: string,
    leaderKey?: string,
  ): Promise<Versioned<SandboxRecord>> {
    return this.#writeSandboxIfUnchanged(record, modRevision, leaderKey);
  }

  /**
   * Write `record` and the `also` operations in one transaction that holds only if the sandbox
   * is still at `modRevision` and, when `leaderKey` is given, only while that election key exists
   * (a deposed placer writes nothing); {@link StaleRevisionError} otherwise.
   */
  async #writeSandboxIfUnchanged(
    record: SandboxRecord,
    modRevision: string,
    leaderKey: string | undefined,
    also: IOperation[] = [],
  ): Promise<Versioned<SandboxRecord>> {
    const key = keys.sandbox(record.id);
    let txn = this.client.if(key, "Mod", "==", modRevision);
    if (leaderKey !== undefined) txn = txn.and(leaderKey, "Create", ">", 0);
    const result = await txn
      .then(this.client.put(key).value(JSON.stringify(record)), ...also)
      .commit();
    if (!result.succeeded) throw new StaleRevisionError(`sandbox ${record.id}`);
    return { value: record, modRevision: String(result.header.revision) };
  }

  /**
   * Mark a pending sandbox scheduled on `node` and write its assignment, in one transaction that
   * holds only if the sandbox is unchanged since `modRevision` (so it is placed at most once) and,
   * when `leaderKey` is given, only while that election key exists (a deposed placer binds nothing).
   */
  async bindSandbox(
    current: Versioned<SandboxRecord>,
    node: string,
    leaderKey?: string,
  ): Promise<Versioned<SandboxRecord>> {
    const now = new Date().toISOString();
    const record: SandboxRecord = {
      ...current.value,
      status: { phase: SandboxPhase.Scheduled, node, endpoints: {}, updatedAt: now },
    };
    const assignment: AssignmentRecord = { sandboxId: record.id, node, assignedAt: now };
    return this.#writeSandboxIfUnchanged(record, current.modRevision, leaderKey, [
      this.client.put(keys.assignment(node, record.id)).value(JSON.stringify(assignment)),
    ]);
  }

  /**
   * Put a sandbox back to pending (its node died) and drop its assignment, in one transaction
   * guarded by the sandbox's mod revision and, when `leaderKey` is given, by that election key
   * still existing (a deposed placer unbinds nothing).
   */
  async unbindSandbox(
    current: Versioned<SandboxRecord>,
    reason: string,
    leaderKey?: string,
  ): Promise<void> {
    await this.#leaveNode(current, leaderKey, {
      phase: SandboxPhase.Pending,
      reason,
      endpoints: {},
      updatedAt: new Date().toISOString(),
    });
  }

  /**
   * Record a sandbox as failed because its node was lost while its run had begun (`starting`,
   * `running`, `migrating`) and drop its assignment, guarded like {@link unbindSandbox}. A run
   * that began is never started again: the node may have run the command in part or to the end.
   */
  async failLostSandbox(
    current: Versioned<SandboxRecord>,
    reason: string,
    leaderKey?: string,
  ): Promise<void> {
    const node = current.value.status.node;
    await this.#leaveNode(current, leaderKey, {
      phase: SandboxPhase.Failed,
      ...(node === undefined ? {} : { node }),
      reason,
      endpoints: {},
      updatedAt: new Date().toISOString(),
    });
  }

  /**
   * Write `status` on a sandbox that leaves its node and drop its assignment there, in one
   * transaction guarded by its mod revision and, with `leaderKey`, by that election key.
   */
  async #leaveNode(
    current: Versioned<SandboxRecord>,
    leaderKey: string | undefined,
    status: SandboxRecord["status"],
  ): Promise<void> {
    const node = current.value.status.node;
    const record: SandboxRecord = { ...current.value, status };
    await this.#writeSandboxIfUnchanged(
      record,
      current.modRevision,
      leaderKey,
      node ? [this.client.delete().key(keys.assignment(node, record.id))] : [],
    );
  }

  /**
   * Replace a sandbox if it is still at `modRevision` **and** its assignment to `node` is still
   * the one created at etcd revision `generation` (see {@link listAssignments}); a node agent
   * reports status this way, so a report about one assignment never lands on a later one (the
   * sandbox deleted and created again, or placed anew). {@link StaleRevisionError} otherwise.
   */
  async updateSandboxForAssignment(
    record: SandboxRecord,
    modRevision: string,
    node: string,
    generation: string,
  ): Promise<Versioned<SandboxRecord>> {
    const key = keys.sandbox(record.id);
    const result = await this.client
      .if(key, "Mod", "==", modRevision)
      .and(keys.assignment(node, record.id), "Create", "==", generation)
      .then(this.client.put(key).value(JSON.stringify(record)))
      .commit();
    if (!result.succeeded) throw new StaleRevisionError(`sandbox ${record.id}`);
    return { value: record, modRevision: String(result.header.revision) };
  }

  /**
   * Move a sandbox's assignment from its node to `target` and record it running there (the end of
   * a live migration), guarded by the sandbox's mod revision.
   */
  async moveSandbox(
    current: Versioned<SandboxRecord>,
    target: string,
    endpoints: Record<string, string>,
  ): Promise<Versioned<SandboxRecord>> {
    const source = current.value.status.node;
    const now = new Date().toISOString();
    const record: SandboxRecord = {
      ...current.value,
      status: {
        ...current.value.status,
        phase: SandboxPhase.Running,
        node: target,
        endpoints,
        updatedAt: now,
        reason: `migrated from ${source ?? "?"}`,
      },
    };
    const assignment: AssignmentRecord = { sandboxId: record.id, node: target, assignedAt: now };
    return this.#writeSandboxIfUnchanged(record, current.modRevision, undefined, [
      ...(source ? [this.client.delete().key(keys.assignment(source, record.id))] : []),
      this.client.put(keys.assignment(target, record.id)).value(JSON.stringify(assignment)),
    ]);
  }

  /** Delete a sandbox and its assignment together; false if it did not exist. */
  async deleteSandbox(id: string): Promise<boolean> {
    const current = await this.getSandbox(id);
    if (!current) return false;
    const node = current.value.status.node;
    const result = await this.client
      .if(keys.sandbox(id), "Mod", "==", current.modRevision)
      .then(
        this.client.delete().key(keys.sandbox(id)),
        ...(node ? [this.client.delete().key(keys.assignment(node, id))] : []),
      )
      .commit();
    if (!result.succeeded) return this.deleteSandbox(id);
    return true;
  }

  // ---- nodes -----------------------------------------------------------------------------------

  /** Write a node record bound to `lease` (the record vanishes when the lease expires). */
  async putNode(record: NodeRecord, lease: Lease): Promise<void> {
    await lease.put(keys.node(record.name)).value(JSON.stringify(record));
  }

  /** Every live node. */
  async listNodes(): Promise<NodeRecord[]> {
    const response = await this.client.getAll().prefix(keys.nodesPrefix).exec();
    return decodeEach(nodeRecordSchema, response.kvs, (value) => value);
  }

  /** One live node, or undefined. */
  async getNode(name: string): Promise<NodeRecord | undefined> {
    const response = await this.client.get(keys.node(name)).exec();
    const kv = response.kvs[0];
    return kv ? decode(nodeRecordSchema, kv) : undefined;
  }

  // ---- routers ---------------------------------------------------------------------------------

  /** Every live routing controller replica. */
  async listRouters(): Promise<RouterRecord[]> {
    const response = await this.client.getAll().prefix(keys.routersPrefix).exec();
    return decodeEach(routerRecordSchema, response.kvs, (value) => value);
  }

  // ---- assignments -----------------------------------------------------------------------------

  /**
   * The assignments of one node, the revision of the read (to watch from), and each assignment's
   * generation by sandbox id: the etcd revision that created its key. etcd never reuses a
   * revision, so a generation names one placement of one sandbox on this node for good.
   */
  async listAssignments(node: string): Promise<{
    items: AssignmentRecord[];
    generations: ReadonlyMap<string, string>;
    revision: string;
  }> {
    const response = await this.client.getAll().prefix(keys.assignmentsPrefix(node)).exec();
    const generations = new Map<string, string>();
    const items = decodeEach(assignmentRecordSchema, response.kvs, (value, kv) => {
      generations.set(value.sandboxId, kv.create_revision);
      return value;
    });
    return { items, generations, revision: response.header.revision };
  }

  /** The generation of the assignment of sandbox `id` to `node` (see {@link listAssignments}). */
  async assignmentGeneration(node: string, id: string): Promise<string | undefined> {
    const response = await this.client.get(keys.assignment(node, id)).exec();
    return response.kvs[0]?.create_revision;
  }
}

/** The sandbox id of an `assignments/<node>/<id>` or `sandboxes/<id>` key. */
export function idOfKey(key: Buffer | string): string {
  return keyName(key.toString());
}
