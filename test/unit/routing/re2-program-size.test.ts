import test from "ava";
import { RE2 } from "re2-wasm";
import { MAX_ROUTING_KEY_LENGTH, routingKeySchema } from "../../../contract/model";
import { baggageRegex } from "../../../runtime/routing/translate";

/**
 * RE2 program sizes of the baggage regex, measured offline with Google's RE2 (the library Envoy
 * links); re2-wasm, the RE2 installed here, cannot report a program size. To recompute after
 * changing `baggageRegex`, print `baggageRegex("a".repeat(n))` for each n and run, in a venv with
 * `pip install google-re2`:
 *   python -c 'import re2,sys; print(re2.compile(sys.argv[1]).programsize)' '<regex>'
 * then update PATTERN (the regex with the key replaced by {key}) and SIZES.
 */
const PATTERN =
  "(?:.*,)?[ \\t]*shardworks-routing-key[ \\t]*=[ \\t]*{key}[ \\t]*(?:;[^,]*)?(?:,.*)?";
const SIZES: Record<number, number> = { 4: 72, 16: 84, 32: 100, 33: 101, 48: 116, 64: 132 };
/** Envoy's default `re2.max_program_size.error_level`: a larger regex is refused. */
const ENVOY_DEFAULT_LIMIT = 100;

test("the measured table is of the regex translate emits today", (t) => {
  for (const n of Object.keys(SIZES).map(Number)) {
    const key = "a".repeat(n);
    t.is(baggageRegex(key), PATTERN.replace("{key}", key), `recompute SIZES for length ${n}`);
  }
});

test("the longest routing key the API accepts keeps the baggage regex within Envoy's default RE2 program size", (t) => {
  const size = SIZES[MAX_ROUTING_KEY_LENGTH];
  t.not(size, undefined, `measure the program size at ${MAX_ROUTING_KEY_LENGTH} characters`);
  t.true(size! <= ENVOY_DEFAULT_LIMIT, `program size ${size} > ${ENVOY_DEFAULT_LIMIT}`);
  // The size grows with the key: one more character would exceed the limit, so it must be refused.
  t.true(routingKeySchema.safeParse("a".repeat(MAX_ROUTING_KEY_LENGTH)).success);
  const tooLong = routingKeySchema.safeParse("a".repeat(MAX_ROUTING_KEY_LENGTH + 1));
  t.false(tooLong.success);
  t.regex(tooLong.error!.issues[0]!.message, /at most 32 characters/);
  // And the regex at the longest key still compiles and matches in RE2.
  const key = "k".repeat(MAX_ROUTING_KEY_LENGTH);
  t.true(new RE2(`^${baggageRegex(key)}$`, "u").test(`a=b, shardworks-routing-key=${key};p`));
});
