/** A shard stack's config: the shard, its forks of the baseline services and its TTL. */
import { z } from "zod";
import { dnsLabel, routingKeySchema } from "../../contract/model";
import {
  DEFAULT_READY_TIMEOUT_SECONDS,
  MAX_READY_TIMEOUT_SECONDS,
} from "../../components/dev-shard";
import {
  ENV_NAME,
  MAX_SHARD_TTL_MS,
  STACK_NAME,
  StackKind,
  duration,
  image,
  port,
  positiveQuantity,
  readinessPath,
} from "./fields";

/** One forked service of a shard: overrides of a baseline service. */
export const forkSchema = z.strictObject({
  /** Image of the fork; absent = the baseline's image (a fork that only changes env). */
  image: image.optional(),
  env: z
    .record(
      z.string().regex(ENV_NAME, { message: "must be an environment variable name" }),
      z.string(),
    )
    .default({}),
  /** Container port; absent = the baseline's port. */
  port: port.optional(),
  replicas: z.number().int().min(1).max(5).default(1),
  /** Readiness path of the fork; absent = the baseline's (see `baselineSchema.readinessPath`). */
  readinessPath: readinessPath.optional(),
});
export type ForkConfig = z.output<typeof forkSchema>;

/** `kind: shard`: one per developer. */
export const shardConfigSchema = z
  .strictObject({
    kind: z.literal(StackKind.Shard),
    /** Kubernetes user name of the owner (gets `shardworks:shard-owner` in the shard). */
    owner: z.string().min(1).max(253).regex(/^\S+$/, { message: "must not contain spaces" }),
    /** Shard name (namespace `shard-<name>`); absent = the owner, if it is a DNS label. */
    name: dnsLabel.max(57, { message: "must be at most 57 characters" }).optional(),
    /** The platform stack, e.g. `organization/shardworks/platform-local`. */
    platformStack: z.string().regex(STACK_NAME, {
      message: 'must be a stack name, e.g. "organization/shardworks/platform-local"',
    }),
    /** Routing key carried by requests; absent = `shard-<name>`. */
    routingKey: routingKeySchema.optional(),
    ttl: duration(MAX_SHARD_TTL_MS, "7d").default("24h"),
    quota: z
      .strictObject({
        cpu: positiveQuantity.default("4"),
        memory: positiveQuantity.default("8Gi"),
        pods: z.number().int().min(1).max(500).default(20),
      })
      .default({ cpu: "4", memory: "8Gi", pods: 20 }),
    forks: z.record(dnsLabel, forkSchema).default({}),
    /**
     * Runtime API URL as reachable from where `pulumi up` runs (the platform exports the
     * in-cluster URL, which a laptop cannot reach). Absent = the platform's `runtimeApiUrl`.
     */
    runtimeApiUrl: z
      .url({ protocol: /^https?$/, error: 'must be an http(s) URL, e.g. "http://127.0.0.1:8080"' })
      .optional(),
    /** Platform token (a secret) to register the shard with; absent = the platform's output. */
    platformToken: z
      .string()
      .min(32, { message: "must be at least 32 characters (the platform stack's platformToken)" })
      .optional(),
    /**
     * How long `pulumi up` waits for each fork's pods to become Ready before it fails, naming the
     * fork and the reason (e.g. an image that cannot be pulled). Shards always wait: a fork that
     * never runs is a failed deploy, not a success.
     */
    readyTimeout: duration(MAX_READY_TIMEOUT_SECONDS * 1000, "1h").default(
      `${DEFAULT_READY_TIMEOUT_SECONDS / 60}m`,
    ),
  })
  .superRefine((s, ctx) => {
    if (s.name === undefined && !dnsLabel.max(57).safeParse(s.owner).success) {
      ctx.addIssue({
        code: "custom",
        path: ["name"],
        message: `is required because owner ${JSON.stringify(s.owner)} is not a DNS label; e.g. "alice"`,
      });
    }
  })
  .transform((s) => ({ ...s, name: s.name ?? s.owner }));
export type ShardConfig = z.output<typeof shardConfigSchema>;
