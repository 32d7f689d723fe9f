/**
 * The Hono environment shared by every HTTP sub-app of the scheduler API (sandboxes, nodes,
 * shards): the auth middleware sets `principal`, the request-id middleware sets `requestId`.
 */
import type { Principal } from "./auth";

/** Hono `Env` of the scheduler API. */
export interface ApiEnv {
  Variables: {
    principal: Principal;
    requestId: string;
  };
}
