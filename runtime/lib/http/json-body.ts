/**
 * The one JSON request-body reader of every API (scheduler, shards, node agent): 415 unless the
 * body is sent as `application/json` (no charset but UTF-8), 400 `malformed_json` for anything
 * `JSON.parse` refuses or for an object with the same key twice, then the zod schema (400 naming
 * each field).
 */
import { MIMEType } from "node:util";
import type { Context } from "hono";
import { visit } from "jsonc-parser";
import type { z } from "zod";
import { HttpError, badRequest } from "../errors";

/**
 * The first key that appears twice in one object of `text` (as a JSON path), or undefined.
 * `JSON.parse` keeps the last of two equal keys, so `{"image": "a", "image": "b"}` would pass
 * validation as "b" while a log, a proxy or a reviewer reads "a": such bodies are refused.
 * Uses jsonc-parser's streaming visitor (the text is valid JSON by then: `JSON.parse` read it).
 */
export function duplicateKey(text: string): string | undefined {
  const objects: Set<string>[] = [];
  const path: (string | number)[] = [];
  let found: string | undefined;
  visit(text, {
    onObjectBegin: () => {
      objects.push(new Set());
    },
    onObjectEnd: () => {
      objects.pop();
    },
    onObjectProperty: (property, _offset, _length, _line, _column, pathSupplier) => {
      const keys = objects[objects.length - 1];
      if (found !== undefined || !keys) return;
      if (keys.has(property)) {
        path.push(...pathSupplier(), property);
        found = path
          .map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`))
          .join("");
      }
      keys.add(property);
    },
  });
  return found;
}

/**
 * Why a request's `content-type` is not JSON as this API reads it, or undefined: the media type
 * must be `application/json` and a charset, if given (once), `utf-8` (RFC 8259: JSON exchanged
 * between systems is UTF-8). The body is always decoded as UTF-8, so accepting another charset
 * would let a proxy or a log that honours the header read other text than the API does.
 */
export function jsonContentTypeProblem(type: string | undefined): string | undefined {
  const got = type === undefined ? "no content-type" : `"${type.slice(0, 100)}"`;
  let mime: MIMEType | undefined;
  try {
    if (type !== undefined) mime = new MIMEType(type);
  } catch {
    // not a media type at all
  }
  if (mime?.essence !== "application/json") {
    return `send the body as JSON with "content-type: application/json" (got ${got})`;
  }
  // Counted in the text: MIMEType keeps only the first of two parameters of one name (other
  // parsers keep the last) and drops an empty one.
  const declared = (type ?? "").match(/;\s*charset\s*=/gi)?.length ?? 0;
  const charset = mime.params.get("charset");
  if (declared > 1 || (declared === 1 && charset?.toLowerCase() !== "utf-8")) {
    return `JSON bodies are UTF-8: send "content-type: application/json" or "application/json; charset=utf-8" and the body in UTF-8 (got ${got})`;
  }
  return undefined;
}

/** Read a JSON body and parse it with a schema: 415, 400 malformed_json or 400 naming the fields. */
export async function parseJsonBody<S extends z.ZodType>(
  c: Context,
  schema: S,
): Promise<z.infer<S>> {
  const problem = jsonContentTypeProblem(c.req.header("content-type"));
  if (problem !== undefined) throw new HttpError(415, "unsupported_media_type", problem);
  const text = await c.req.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new HttpError(
      400,
      "malformed_json",
      `the request body is not valid JSON: ${(error as Error).message}`,
    );
  }
  const duplicate = duplicateKey(text);
  if (duplicate !== undefined) {
    throw new HttpError(
      400,
      "malformed_json",
      `${duplicate}: the key appears twice in one object; send it once`,
    );
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw badRequest(parsed.error);
  return parsed.data;
}
