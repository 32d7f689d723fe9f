/**
 * Errors that know their HTTP status and render themselves. Anything else reaching the central
 * handler becomes a 500 with a request id.
 */
import type { z } from "zod";

/** An error meant for the API caller: status, a stable code, a message that says the fix. */
export class HttpError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 409 | 413 | 415 | 422 | 429 | 503,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "HttpError";
  }

  /** The JSON body sent to the client. */
  toJSON(): { error: { code: string; message: string; details?: unknown } } {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.details === undefined ? {} : { details: this.details }),
      },
    };
  }
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

/** A 400 naming every bad field. */
export function badRequest(error: z.ZodError, root = ""): HttpError {
  const lines = formatZodIssues(error, root);
  return new HttpError(400, "invalid_request", lines.join("; "), lines);
}
