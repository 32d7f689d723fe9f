/**
 * The scheduler API's and the node agent API's requests and answers, as zod schemas: each server
 * and its client share them.
 */
export { acceptMigrationReplySchema, adoptReplySchema, migrateRequestSchema } from "./agent";
export { apiErrorBodySchema, type ApiErrorBody } from "./errors";
export {
  healthzSchema,
  nodeListSchema,
  nodeViewSchema,
  sandboxListSchema,
  sandboxViewSchema,
  type Healthz,
  type NodeView,
  type SandboxView,
} from "./scheduler";
export {
  DEFAULT_SHARD_TTL_SECONDS,
  forksSchema,
  shardBodySchema,
  shardListSchema,
  shardReplySchema,
  shardViewSchema,
  type ShardBody,
  type ShardReply,
  type ShardView,
} from "./shards";
export {
  routerStatusSchema,
  xdsClientsReportSchema,
  xdsClientStatusSchema,
  xdsResourceStatusSchema,
  type RouterStatus,
  type XdsClientsReport,
  type XdsClientStatus,
  type XdsResourceStatus,
} from "./xds";
