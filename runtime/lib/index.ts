export { KEY_PREFIX, keys, keyName } from "./keys";
export * from "../../contract/model";
export { logger, type Logger } from "./logger";
export {
  ConflictError,
  DomainError,
  ForbiddenError,
  HttpError,
  InvalidRequestError,
  NotFoundError,
  StaleRevisionError,
  UnavailableError,
  badRequest,
  formatZodIssues,
} from "./errors";
export { freePort } from "./ports";
export { startEtcd, type EtcdServer, type StartEtcdOptions } from "./etcd-server";
export { type Principal, hashToken, newShardToken, shardOfToken, digestsEqual } from "./auth";
export type { ApiEnv, ServiceEnv } from "./http";
export { Store, ACTIVE_PHASES, TERMINAL_PHASES, type Versioned } from "./store";
