/**
 * The one JSON request-body reader of every API (scheduler, shards, node agent): 415 unless the
 * body is sent as `application/json`, 400 `malformed_json` for anything `JSON.parse` refuses or
 * for an object with the same key twice, then the zod schema (400 naming each field).
 */
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

/** Read a JSON body and parse it with a schema: 415, 400 malformed_json or 400 naming the fields. */
export async function parseJsonBody<S extends z.ZodType>(
  c: Context,
  schema: S,
): Promise<z.infer<S>> {
  const type = c.req.header("content-type");
  if (type === undefined || !/^application\/json\s*(;|$)/i.test(type)) {
    throw new HttpError(
      415,
      "unsupported_media_type",
      `send the body as JSON with "content-type: application/json" (got ${type === undefined ? "no content-type" : `"${type.slice(0, 100)}"`})`,
    );
  }
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
