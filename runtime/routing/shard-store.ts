/**
 * The shard registry in etcd: `shards/<name>` holds a {@link ShardRecord}, `routing-keys/<key>`
 * holds the name of the shard owning that routing key. Both are written in one transaction guarded
 * by compare-and-swap, so two shards can never hold the same routing key and a concurrent update is
 * refused rather than lost. Only the sha256 of a shard's token is stored.
 */
import type { Etcd3 } from "etcd3";
import { hashToken, newShardToken } from "../lib/auth";
import { HttpError } from "../lib/errors";
import { keys } from "../lib/keys";
import { shardRecordSchema, type ServiceProtocol, type ShardRecord } from "../lib/model";

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
        throw new HttpError(409, "shard_exists", `shard "${name}" already exists`);
      }
      throw await this.#routingKeyTaken(record.routingKey);
    }
    return { record, token };
  }

  /**
   * Replace a shard's routing key, owner, forks and TTL (the TTL restarts now). Refused with 409
   * when the shard changed since `expected` was read or the new routing key is taken.
   */
  async update(expected: StoredShard, input: ShardInput, now = new Date()): Promise<ShardRecord> {
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
      ttlSeconds: input.ttlSeconds,
      expiresAt: new Date(now.getTime() + input.ttlSeconds * 1000).toISOString(),
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
        throw new HttpError(
          409,
          "shard_changed",
          `shard "${old.name}" changed while it was being updated; retry the request`,
        );
      }
      throw await this.#routingKeyTaken(record.routingKey);
    }
    return record;
  }

  /**
   * Delete a shard and release its routing key. With `expectedModRevision`, only if the shard was
   * not changed since (the reaper uses this so a renewed shard survives). Returns whether it was
   * deleted.
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
    return result.succeeded;
  }

  async #routingKeyTaken(routingKey: string): Promise<HttpError> {
    const holder = await this.#etcd.get(keys.routingKey(routingKey)).string();
    return new HttpError(
      409,
      "routing_key_taken",
      `routingKey "${routingKey}" is already used by shard "${holder ?? "?"}"; choose another routing key`,
    );
  }
}

/** Parse a stored shard, failing loudly if another writer broke the contract. */
export function parseShard(json: string): ShardRecord {
  return shardRecordSchema.parse(JSON.parse(json));
}
