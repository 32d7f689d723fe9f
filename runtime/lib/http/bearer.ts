/**
 * Bearer tokens at the edge: reading `Authorization: Bearer <token>` and the middleware for a
 * service that accepts exactly one token (the node agent API). The scheduler's principal-setting
 * auth builds on {@link bearerToken} and {@link unauthenticated}.
 */
import type { MiddlewareHandler } from "hono";
import { digestsEqual, hashToken } from "../auth";
import { HttpError } from "../errors";

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  return /^Bearer\s+(\S+)$/i.exec(header ?? "")?.[1];
}

/** The one 401 of every API: code `unauthenticated`, the message says which token to send. */
export function unauthenticated(message: string): HttpError {
  return new HttpError(401, "unauthenticated", message);
}

/**
 * Require one fixed bearer token (compared as sha256 digests, in constant time). `hint` says
 * which token the caller needs.
 */
export function requireBearer(token: string, hint: string): MiddlewareHandler {
  const expected = hashToken(token);
  return async (c, next) => {
    const given = bearerToken(c.req.header("authorization"));
    if (given === undefined || !digestsEqual(hashToken(given), expected)) {
      throw unauthenticated(hint);
    }
    await next();
  };
}
