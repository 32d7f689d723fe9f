/**
 * The Hono environments of the runtime's HTTP services. Every service app has a request id
 * ({@link ServiceEnv}); the scheduler API's sub-apps (sandboxes, nodes, shards) also have the
 * {@link Principal} its auth middleware sets ({@link ApiEnv}).
 */
import type { Principal } from "../auth";

/** Hono `Env` of any service app built by `createServiceApp`. */
export interface ServiceEnv {
  Variables: {
    requestId: string;
  };
}

/** Hono `Env` of the scheduler API. */
export interface ApiEnv {
  Variables: {
    principal: Principal;
    requestId: string;
  };
}
