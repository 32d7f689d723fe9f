/**
 * The shard registry of the scheduler API (`/v1/shards`): what a PUT sends and what every answer
 * holds. The scheduler parses requests with these schemas and the client parses answers with them.
 */
import { z } from "zod";
import {
  MAX_SHARD_TTL_SECONDS,
  destinationSchema,
  dnsLabel,
  hasControlCharacter,
  routingKeySchema,
  serviceProtocolSchema,
} from "../model";

/**
 * Forks are a list, not an object: a JSON object silently keeps the last of two equal keys, so a
 * list is the only shape in which a duplicate fork of one service can be seen and refused.
 */
export const forksSchema = z
  .array(
    z.strictObject({
      service: dnsLabel,
      destination: destinationSchema,
      /** How the gateway talks to the fork; absent = the baseline service's protocol. */
      protocol: serviceProtocolSchema.optional(),
    }),
  )
  .max(256)
  .superRefine((forks, ctx) => {
    const seen = new Map<string, number>();
    forks.forEach((fork, index) => {
      const first = seen.get(fork.service);
      if (first !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: [index, "service"],
          message: `service "${fork.service}" is already forked at forks[${first}]; a shard may fork a service once`,
        });
      } else seen.set(fork.service, index);
    });
  });

/** A shard's time to live when the platform token's PUT gives none: one day. */
export const DEFAULT_SHARD_TTL_SECONDS = 86_400;

/** Body of `PUT /v1/shards/<name>`. */
export const shardBodySchema = z.strictObject({
  routingKey: routingKeySchema,
  owner: z
    .string()
    .min(1)
    .max(253)
    .refine((owner) => !hasControlCharacter(owner), {
      message:
        "must not contain control characters (NUL, CR, LF, …): it is shown in logs and headers",
    }),
  forks: forksSchema,
  /**
   * Time to live from now. Absent: {@link DEFAULT_SHARD_TTL_SECONDS} when the platform token
   * creates or renews; the current expiry kept when a shard token updates its own shard (which may
   * only shorten it).
   */
  ttlSeconds: z.number().int().min(1).max(MAX_SHARD_TTL_SECONDS).optional(),
});
export type ShardBody = z.infer<typeof shardBodySchema>;

/**
 * A shard as the API shows it: no token hash, forks as a list. Read tolerantly (a protocol this
 * client does not know is kept as text): a newer scheduler's answer to a PUT that created the
 * shard must not read as a failure, or the caller would lose the shard's token.
 */
export const shardViewSchema = z.object({
  name: z.string(),
  routingKey: z.string(),
  owner: z.string(),
  forks: z.array(
    z.object({
      service: z.string(),
      destination: z.string(),
      protocol: z.string().optional(),
    }),
  ),
  ttlSeconds: z.number(),
  expiresAt: z.string(),
  createdAt: z.string(),
});
export type ShardView = z.infer<typeof shardViewSchema>;

/** The answer of `GET` and `PUT /v1/shards/<name>`; `token` only when the PUT created the shard. */
export const shardReplySchema = z.object({ shard: shardViewSchema, token: z.string().optional() });
export type ShardReply = z.infer<typeof shardReplySchema>;

/** The answer of `GET /v1/shards`: the shards the token may see. */
export const shardListSchema = z.object({ shards: z.array(shardViewSchema) });
