/** The HTTP edge kit every runtime service is built with (see `app.ts`). */
export {
  createServiceApp,
  DEFAULT_BODY_LIMIT_BYTES,
  renderError,
  statusOf,
  type ServiceAppOptions,
} from "./app";
export { bearerToken, requireBearer, unauthenticated } from "./bearer";
export type { ApiEnv, ServiceEnv } from "./env";
export { duplicateKey, parseJsonBody } from "./json-body";
export { parseParam, parseQuery } from "./validate";
