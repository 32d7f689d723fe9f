/** `shards/<name>`: a registered dev shard, its TTL limit and its identity. */
import { createHash } from "node:crypto";
import { z } from "zod";
import { dnsLabel } from "./names";
import { destinationSchema, routingKeySchema, serviceProtocolSchema } from "./routing";

/** Longest TTL a shard may have: 7 days (the platform policy; every layer enforces this one value). */
export const MAX_SHARD_TTL_SECONDS = 7 * 86_400;

/** `shards/<name>`: a registered dev shard. */
export const shardRecordSchema = z.strictObject({
  name: dnsLabel,
  /**
   * Random identity of this shard, fixed at creation: a shard deleted and created again under the
   * same name is another shard (another uid). Absent in records written before it existed; see
   * {@link shardUidOf}.
   */
  uid: z
    .string()
    .regex(/^[a-f0-9]{32}$/)
    .optional(),
  routingKey: routingKeySchema,
  owner: z.string().min(1).max(253),
  /** Baseline service name → the fork's destination host:port. */
  forks: z.record(dnsLabel, destinationSchema),
  /** Service → its fork's protocol, where it differs from the baseline's (absent = the same). */
  protocols: z.record(dnsLabel, serviceProtocolSchema).optional(),
  ttlSeconds: z.number().int().positive(),
  expiresAt: z.iso.datetime(),
  /** sha256 (hex) of the shard's bearer token; the token itself is never stored. */
  tokenHash: z.string().regex(/^[a-f0-9]{64}$/),
  createdAt: z.iso.datetime(),
});
export type ShardRecord = z.infer<typeof shardRecordSchema>;

/**
 * The identity of a shard: its `uid`, or for a record written before uids existed, a digest of
 * what is fixed at its creation (name, creation time, token hash), so it too changes when the
 * name is reused.
 */
export function shardUidOf(record: ShardRecord): string {
  if (record.uid !== undefined) return record.uid;
  return createHash("sha256")
    .update(`${record.name}\n${record.createdAt}\n${record.tokenHash}`)
    .digest("hex")
    .slice(0, 32);
}
