/**
 * One way to build a runtime HTTP service (scheduler API, node agent API): request ids, a JSON
 * 404, and the one error handler that maps domain errors to statuses. Nothing else renders an
 * error, so every service answers the same fault with the same status, code and body shape.
 */
import { Hono, type Context, type Env } from "hono";
import { bodyLimit } from "hono/body-limit";
import { requestId } from "hono/request-id";
import {
  ConflictError,
  DomainError,
  ForbiddenError,
  HttpError,
  type HttpStatus,
  InvalidRequestError,
  NotFoundError,
  UnavailableError,
  errorBody,
} from "../errors";
import { logger } from "../logger";
import { storeUnavailableError } from "../store";

/** The largest request body a service takes unless told otherwise: 1 MiB. */
export const DEFAULT_BODY_LIMIT_BYTES = 1024 * 1024;

/** Options of {@link createServiceApp}. */
export interface ServiceAppOptions {
  /** Who answers, in logs: `"scheduler API"`, `"node agent API"`. */
  service: string;
  /** Where the caller finds the endpoints, appended to a 404 for an unknown path. */
  docs: string;
  /** Largest accepted request body in bytes (413 `body_too_large` above it); default 1 MiB. */
  bodyLimitBytes?: number;
}

/** The status of a domain error: the only place a domain error becomes HTTP. */
export function statusOf(error: DomainError): HttpStatus {
  if (error instanceof InvalidRequestError) return 400;
  if (error instanceof ForbiddenError) return 403;
  if (error instanceof NotFoundError) return 404;
  if (error instanceof ConflictError) return 409;
  if (error instanceof UnavailableError) return 503;
  return 422;
}

/**
 * Render any error: an {@link HttpError} or {@link DomainError} as itself, etcd unreachable as
 * 503 + Retry-After (clients retry; issue 13), anything else as a 500 that tells only the request
 * id (the message, which may name files, addresses or internals, goes to the log).
 */
export function renderError(error: Error, c: Context, service: string): Response {
  if (error instanceof HttpError) return c.json(error.toJSON(), error.status);
  const domain = error instanceof DomainError ? error : storeUnavailableError(error);
  if (domain) {
    if (domain instanceof UnavailableError && domain.cause !== undefined) {
      // The answer says only what to do; what failed underneath is for the operator.
      logger.warn(
        { err: domain.cause, requestId: c.get("requestId"), path: c.req.path },
        `${service}: ${domain.code}`,
      );
    }
    if (domain instanceof UnavailableError && domain.retryAfterSeconds !== undefined) {
      c.header("retry-after", String(domain.retryAfterSeconds));
    }
    return c.json(errorBody(domain.code, domain.message, domain.details), statusOf(domain));
  }
  const id = (c.get("requestId") as string | undefined) ?? "-";
  logger.error({ err: error, requestId: id, path: c.req.path }, `unhandled error in ${service}`);
  return c.json(
    errorBody("internal", `internal error; quote request id ${id} when reporting it`),
    500,
  );
}

/**
 * A Hono app with a request id on every request, a body limit, a JSON 404 naming the docs, and
 * {@link renderError} as its one error handler. Routes and sub-apps are added by the caller;
 * sub-apps mounted with `app.route` share the handler.
 */
export function createServiceApp<E extends Env>(options: ServiceAppOptions): Hono<E> {
  const app = new Hono<E>();
  app.use("*", requestId());
  const maxSize = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  app.use(
    "*",
    bodyLimit({
      maxSize,
      onError: () => {
        throw new HttpError(
          413,
          "body_too_large",
          `the request body is larger than ${maxSize} bytes; send less`,
        );
      },
    }),
  );
  app.notFound((c) =>
    c.json(
      errorBody("not_found", `no endpoint ${c.req.method} ${c.req.path} (see ${options.docs})`),
      404,
    ),
  );
  app.onError((error, c) => renderError(error, c, options.service));
  return app;
}
