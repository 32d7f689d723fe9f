/**
 * The shard registry in etcd: `shards/<name>` holds a {@link ShardRecord}, `routing-keys/<key>`
 * holds the name of the shard owning that routing key. Both are written in one transaction guarded
 * by compare-and-swap, so two shards can never hold the same routing key and a concurrent update is
 * refused rather than lost. Only the sha256 of a shard's token is stored.
 */
import { randomBytes } from "node:crypto";
import type { Etcd3 } from "etcd3";
import { hashToken, newShardToken } from "../lib/auth";
import { ConflictError } from "../lib/errors";
import { keys } from "../lib/keys";
import {
  shardRecordSchema,
  shardUidOf,
  type ServiceProtocol,
  type ShardRecord,
} from "../../contract/model";
import { Store } from "../lib/store";

/** What a caller may set on a shard (the rest is derived). */
export interface ShardInput {
  readonly routingKey: string;
  readonly owner: string;
  /** Baseline service → fork destination host:port. */
  readonly forks: Readonly<Record<string, string>>;
  /** Baseline service → its fork's protocol, where it differs from the baseline's. */
  readonly protocols?: Readonly<Record<string, ServiceProtocol>>;
  readonly ttlSeconds: number;
}

/** What {@link ShardStore.update} replaces: without `ttlSeconds` the TTL and expiry stay. */
export type ShardUpdate = Omit<ShardInput, "ttlSeconds"> & { readonly ttlSeconds?: number };

/** A shard record with the etcd mod revision it was read at (for compare-and-swap). */
export interface StoredShard {
  readonly record: ShardRecord;
  readonly modRevision: string;
}

/** CRUD of shards in etcd. */
export class ShardStore {
  readonly #etcd: Etcd3;

  constructor(etcd: Etcd3) {
    this.#etcd = etcd;
  }

  /** The shard called `name`, or undefined. */
  async get(name: string): Promise<StoredShard | undefined> {
    const response = await this.#etcd.get(keys.shard(name)).exec();
    const kv = response.kvs[0];
    if (!kv) return undefined;
    return { record: parseShard(kv.value.toString()), modRevision: kv.mod_revision };
  }

  /** Every shard, ordered by name. */
  async list(): Promise<ShardRecord[]> {
    const values = await this.#etcd
      .getAll()
      .prefix(keys.shardsPrefix)
      .sort("Key", "Ascend")
      .strings();
    return Object.values(values).map(parseShard);
  }

  /**
   * Create a shard; returns the record and its token (the only time the token is seen).
   * 409 when the name or the routing key is taken.
   */
  async create(
    name: string,
    input: ShardInput,
    now = new Date(),
  ): Promise<{ record: ShardRecord; token: string }> {
    const token = newShardToken(name);
    const record = shardRecordSchema.parse({
      name,
      uid: randomBytes(16).toString("hex"),
      routingKey: input.routingKey,
      owner: input.owner,
      forks: input.forks,
      ...(input.protocols && Object.keys(input.protocols).length > 0
        ? { protocols: input.protocols }
        : {}),
      ttlSeconds: input.ttlSeconds,
      expiresAt: new Date(now.getTime() + input.ttlSeconds * 1000).toISOString(),
      tokenHash: hashToken(token),
      createdAt: now.toISOString(),
    });
    const result = await this.#etcd
      .if(keys.shard(name), "Create", "==", 0)
      .and(keys.routingKey(record.routingKey), "Create", "==", 0)
      .then(
        this.#etcd.put(keys.shard(name)).value(JSON.stringify(record)),
        this.#etcd.put(keys.routingKey(record.routingKey)).value(name),
      )
      .commit();
    if (!result.succeeded) {
      if (await this.get(name)) {
        throw new ConflictError("shard_exists", `shard "${name}" already exists`);
      }
      throw await this.#routingKeyTaken(record.routingKey);
    }
    return { record, token };
  }

  /**
   * Replace a shard's routing key, owner, forks and, when `input.ttlSeconds` is given, its TTL
   * (restarting now; without it `ttlSeconds` and `expiresAt` stay). Refused with 409 when the
   * shard changed since `expected` was read or the new routing key is taken.
   */
  async update(expected: StoredShard, input: ShardUpdate, now = new Date()): Promise<ShardRecord> {
    const old = expected.record;
    const { protocols: _oldProtocols, ...rest } = old;
    const record = shardRecordSchema.parse({
      ...rest,
      routingKey: input.routingKey,
      owner: input.owner,
      forks: input.forks,
      ...(input.protocols && Object.keys(input.protocols).length > 0
        ? { protocols: input.protocols }
        : {}),
      ...(input.ttlSeconds === undefined
        ? {}
        : {
            ttlSeconds: input.ttlSeconds,
            expiresAt: new Date(now.getTime() + input.ttlSeconds * 1000).toISOString(),
          }),
    });
    const keyChanged = record.routingKey !== old.routingKey;
    let txn = this.#etcd.if(keys.shard(old.name), "Mod", "==", expected.modRevision);
    if (keyChanged) txn = txn.and(keys.routingKey(record.routingKey), "Create", "==", 0);
    const ops = [this.#etcd.put(keys.shard(old.name)).value(JSON.stringify(record))];
    if (keyChanged) {
      ops.push(this.#etcd.put(keys.routingKey(record.routingKey)).value(old.name));
    }
    const result = await (keyChanged
      ? txn.then(...ops, this.#etcd.delete().key(keys.routingKey(old.routingKey))).commit()
      : txn.then(...ops).commit());
    if (!result.succeeded) {
      const current = await this.get(old.name);
      if (!current || current.modRevision !== expected.modRevision) {
        throw new ConflictError(
          "shard_changed",
          `shard "${old.name}" changed while it was being updated; retry the request`,
        );
      }
      throw await this.#routingKeyTaken(record.routingKey);
    }
    return record;
  }

  /**
   * Delete a shard and release its routing key, then delete its sandboxes (those created under
   * this shard's uid, or before uids existed). With `expectedModRevision`, only if the shard was
   * not changed since (the reaper uses this so a renewed shard survives). Returns whether it was
   * deleted. The sandboxes go after the shard, one by one: should that stop half way, what is left
   * is unreachable by any later shard of the name (another uid) and the next delete or the
   * platform removes it.
   */
  async delete(name: string, expectedModRevision?: string): Promise<boolean> {
    const current = await this.get(name);
    if (!current) return false;
    if (expectedModRevision !== undefined && current.modRevision !== expectedModRevision) {
      return false;
    }
    const result = await this.#etcd
      .if(keys.shard(name), "Mod", "==", current.modRevision)
      .then(
        this.#etcd.delete().key(keys.shard(name)),
        this.#etcd.delete().key(keys.routingKey(current.record.routingKey)),
      )
      .commit();
    if (result.succeeded) await this.#deleteSandboxesOf(current.record);
    return result.succeeded;
  }

  async #deleteSandboxesOf(shard: ShardRecord): Promise<void> {
    const sandboxes = new Store(this.#etcd);
    const uid = shardUidOf(shard);
    const { items } = await sandboxes.listSandboxes();
    for (const { value } of items) {
      const { shard: name, shardUid } = value.spec;
      if (name === shard.name && (shardUid === undefined || shardUid === uid)) {
        await sandboxes.deleteSandbox(value.id);
      }
    }
  }

  async #routingKeyTaken(routingKey: string): Promise<ConflictError> {
    const holder = await this.#etcd.get(keys.routingKey(routingKey)).string();
    return new ConflictError(
      "routing_key_taken",
      `routingKey "${routingKey}" is already used by shard "${holder ?? "?"}"; choose another routing key`,
    );
  }
}

/** Parse a stored shard, failing loudly if another writer broke the contract. */
export function parseShard(json: string): ShardRecord {
  return shardRecordSchema.parse(JSON.parse(json));
}
