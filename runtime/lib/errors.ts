/**
 * The runtime's errors. Domain code (stores, placer, agent, migration) throws a
 * {@link DomainError}: what went wrong in the domain's words, with a stable code from the
 * vocabulary of `docs/readme/errors.md`. Only the HTTP edge (`lib/http`) turns one into a status.
 * {@link HttpError} is for the edge itself (auth, body size, content type).
 */
import type { z } from "zod";

/** The statuses an API answers deliberately (anything else is a 500). */
export type HttpStatus = 400 | 401 | 403 | 404 | 409 | 413 | 415 | 422 | 429 | 503;

/** The body every API sends with an error. */
export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

/** Options of a {@link DomainError} or {@link HttpError}. */
export interface ErrorOptionsWithDetails extends ErrorOptions {
  /** Structured detail for the caller (e.g. one line per bad field). */
  details?: unknown;
}

/**
 * A failure the caller can act on, without a transport: the edge maps each subclass to one HTTP
 * status (`lib/http/app.ts`). `code` is stable and documented; `message` says the fix.
 */
export abstract class DomainError extends Error {
  readonly details: unknown;

  constructor(
    readonly code: string,
    message: string,
    options: ErrorOptionsWithDetails = {},
  ) {
    super(message, options);
    this.name = new.target.name;
    this.details = options.details;
  }
}

/** The request is wrong in a way the caller can fix (a field, a length). */
export class InvalidRequestError extends DomainError {}

/** The caller may not do this (another shard's resource, a private registry). */
export class ForbiddenError extends DomainError {}

/** There is no such thing, or the caller may not know it exists. */
export class NotFoundError extends DomainError {}

/** The thing is not in a state that allows this (exists already, not running, changed). */
export class ConflictError extends DomainError {}

/**
 * A compare-and-swap lost: somebody else changed the record first. Domain loops catch this one
 * (and only this one) to read again and retry.
 */
export class StaleRevisionError extends ConflictError {
  constructor(what: string) {
    super("conflict", `${what} was changed concurrently; read it again and retry your update`);
  }
}

/** Something this depends on (etcd, a node agent) does not answer; the same call may work later. */
export class UnavailableError extends DomainError {
  /** Seconds the caller should wait before retrying (`Retry-After`), when known. */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    code: string,
    message: string,
    options: ErrorOptionsWithDetails & { retryAfterSeconds?: number } = {},
  ) {
    super(code, message, options);
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/** An error of the HTTP edge itself (auth, body size, content type): it knows its status. */
export class HttpError extends Error {
  constructor(
    readonly status: HttpStatus,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "HttpError";
  }

  /** The JSON body sent to the client. */
  toJSON(): ErrorBody {
    return errorBody(this.code, this.message, this.details);
  }
}

/** The one error body shape: `{ error: { code, message, details? } }`. */
export function errorBody(code: string, message: string, details?: unknown): ErrorBody {
  return { error: { code, message, ...(details === undefined ? {} : { details }) } };
}

/** One line per zod issue: `field.path: message`. */
export function formatZodIssues(error: z.ZodError, root = ""): string[] {
  return error.issues.map((issue) => {
    const path = issue.path
      .map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`))
      .join("");
    const where = `${root}${path}`.replace(/^\./, "") || "(body)";
    return `${where}: ${issue.message}`;
  });
}

/** An `invalid_request` naming every bad field. */
export function badRequest(error: z.ZodError, root = ""): InvalidRequestError {
  const lines = formatZodIssues(error, root);
  return new InvalidRequestError("invalid_request", lines.join("; "), { details: lines });
}
