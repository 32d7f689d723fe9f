export { KEY_PREFIX, keys, keyName } from "./keys";
export * from "./model";
export { logger, type Logger } from "./logger";
export { HttpError, badRequest, formatZodIssues } from "./errors";
export { freePort } from "./ports";
export { startEtcd, type EtcdServer, type StartEtcdOptions } from "./etcd-server";
export { type Principal, hashToken, newShardToken, shardOfToken, digestsEqual } from "./auth";
export type { ApiEnv } from "./http";
export { Store, ConflictError, ACTIVE_PHASES, TERMINAL_PHASES, type Versioned } from "./store";
